//! Data loading: walk `<data>/<experiment>/`, classify each file by the naming rules into a plan
//! (pure), then apply the plan concurrently to DynamoDB and S3.

pub mod discover;
pub mod dynamo_json;
pub mod fingerprint;
pub mod load;
pub mod partitions;
pub mod presence;
pub mod rules;
pub mod s3_upload;
pub mod session;
pub mod sql;
pub mod summary;
pub mod validate;
