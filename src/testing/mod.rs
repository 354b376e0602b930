//! Test helpers for hosts (feature `test-util`).
//!
//! * [`conformance`]: checks a [`KeyStore`](crate::KeyStore) against every
//!   clause of its contract.

pub mod conformance;
