//! The OEE platform's domain: configuration, the activity state machine, the shift calendar, MQTT topic
//! and payload types, command verdicts and the request/reply client that waits for them, and the database
//! access layer shared by every service.

pub mod access;
pub mod activity;
pub mod config;
pub mod error;
pub mod health;
pub mod history;
pub mod mqtt;
pub mod oee;
pub mod password;
pub mod payload;
pub mod production;
pub mod request;
pub mod schedule;
pub mod shift;
pub mod store;
pub mod tablet;
pub mod topic;
pub mod verdict;

pub use config::Config;
pub use error::Error;
