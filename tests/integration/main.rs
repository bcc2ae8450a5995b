//! The integration tests, against real servers (moto_server, redis-server, the Docker engine): one
//! test binary with a module per area, so the AWS SDK is linked once, not once per area.

mod support;

mod bench;
mod cli;
mod contract;
mod dashboard;
mod data;
mod docker;
mod faults;
mod lifecycle;
mod mock;
mod queues;
mod readme;
mod services;
mod snapshot;
mod stack;
