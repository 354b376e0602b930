//! Standard Webhooks: signing, verification, receiving and delivery.
