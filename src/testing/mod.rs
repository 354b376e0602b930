//! Test helpers for hosts (feature `test-util`).
//!
//! * [`conformance`]: checks a [`KeyStore`](crate::KeyStore) against every
//!   clause of its contract.
//! * [`FaultyStore`]: wraps a store to make it fail, hang or stall on demand
//!   and count its calls, for testing that a host fails closed; and to hold
//!   a lookup at its racy point ([`FaultyStore::hold_next_lookup`]).
//! * [`RecordingSink`]: a lifecycle sink that records events, or refuses
//!   them on demand.

pub mod conformance;
mod faulty;
mod sink;

pub use faulty::{Fault, FaultyStore, Hold, Op};
pub use sink::RecordingSink;
