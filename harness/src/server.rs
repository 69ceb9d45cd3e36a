//! Starting, watching and stopping a model's server process.
