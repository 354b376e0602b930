//! Secret-scanning support: rules for scanners generated from a
//! [`TokenFormat`](crate::TokenFormat), and a scan over text.
