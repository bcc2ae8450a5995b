//! Queue mocks of the stack: tails that record every message arriving on a queue or topic, and
//! bridges (ESB) that move messages from one queue/topic to another through a Python mapper.

pub mod bridge;
pub mod mapper;
pub mod record;
pub mod tail;
pub mod target;
pub mod worker;
