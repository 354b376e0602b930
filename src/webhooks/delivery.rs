//! Delivery of signed webhooks.
