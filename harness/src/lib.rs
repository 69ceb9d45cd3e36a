//! The lab's instrument: a conformance suite every model must pass, a load
//! generator, server-side accounting, and the report writer.

pub mod account;
pub mod check;
pub mod claims;
pub mod compare;
pub mod env;
pub mod floor;
pub mod load;
pub mod measurement;
pub mod phases;
pub mod report;
pub mod results;
pub mod run;
pub mod server;
pub mod spec;
pub mod stats;
pub mod switching;
