//! The parsed `inframock.toml`: services, declared resources and data-loading rules.
//!
//! Parsing is strict (unknown keys are errors) so a typo is reported with its file, line and column
//! instead of being silently ignored.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// The built-in default stack, used when a project has no `inframock.toml`. It lives in its own
/// file so that editing the repository's `inframock.toml` (the README's example) recompiles nothing;
/// a unit test checks the two declare the same stack.
pub const BUILT_IN: &str = include_str!("default_stack.toml");

/// Everything `inframock.toml` can declare.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StackFile {
    #[serde(default)]
    pub project: ProjectSection,
    #[serde(default)]
    pub stack: StackSection,
    #[serde(default)]
    pub services: ServicesSection,
    #[serde(default)]
    pub tables: Vec<TableDecl>,
    #[serde(default)]
    pub buckets: Vec<BucketDecl>,
    #[serde(default)]
    pub queues: Vec<QueueDecl>,
    #[serde(default)]
    pub topics: Vec<TopicDecl>,
    #[serde(default)]
    pub data: DataSection,
    /// Queues/topics whose messages are recorded to `.inframock/messages/<name>.jsonl`.
    #[serde(default)]
    pub tails: Vec<TailDecl>,
    /// Queue bridges (ESB): IN -> mapper -> OUT.
    #[serde(default)]
    pub bridges: Vec<BridgeDecl>,
}

/// `[[tails]]`: record every message of a queue or topic.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TailDecl {
    /// Name of the record file (`.inframock/messages/<name>.jsonl`).
    pub name: String,
    pub queue: Option<String>,
    pub topic: Option<String>,
    /// Queue tails: read without deleting (other consumers still get the messages).
    #[serde(default)]
    pub peek: bool,
}

/// `[[bridges]]`: move messages from `from` to `to` through `map(message)` of `mapper`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BridgeDecl {
    pub name: Option<String>,
    pub from: String,
    pub to: String,
    /// Python file defining `map(message)`, relative to the project folder.
    pub mapper: std::path::PathBuf,
    /// Time limit of one `map` call in milliseconds (default 5000).
    pub timeout_ms: Option<u64>,
    /// Seconds until a message that could not be delivered is tried again (default 5).
    pub retry_after: Option<i32>,
    /// Attempts before a failing message goes to `dead_letter` (default 5).
    pub max_attempts: Option<u32>,
    /// A queue that takes the messages that failed `max_attempts` times, with the error.
    pub dead_letter: Option<String>,
}

/// `[project]`
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProjectSection {
    /// Project name used to label what we start; default: the project folder's name.
    pub name: Option<String>,
}

/// `[stack]`: what happens to the stack's state between runs.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StackSection {
    /// `stop` saves the stack's state (snapshot `persist`) and the next `run` loads it before the
    /// data folder.
    #[serde(default)]
    pub persist: bool,
    /// With `persist`: also save every this many seconds (a helper process, `persist` in
    /// `status`), so a killed stack loses at most that much (off by default).
    pub persist_every: Option<u64>,
}

/// `[services.*]`: the built-in services, then every other name is a declared service.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ServicesSection {
    #[serde(default)]
    pub aws: ServiceSection,
    #[serde(default)]
    pub redis: ServiceSection,
    #[serde(default)]
    pub mock: MockSection,
    #[serde(default)]
    pub faults: FaultsSection,
    #[serde(default)]
    pub dashboard: DashboardSection,
    /// `[services.<name>]` of any other name: a service of a preset kind or described in full.
    #[serde(flatten)]
    pub declared: BTreeMap<String, DeclaredSection>,
}

/// `[services.<name>]` of a declared service: `preset = "memcached"` (every other field then
/// overrides the preset's), or a full description (`command` and/or `image`, `probe`, `url`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeclaredSection {
    /// A kind inframock knows: `memcached`, `postgres`, `redis`.
    pub preset: Option<String>,
    /// Local runtime: the command line, `{port}` and `{data_dir}` filled in.
    pub command: Option<Vec<String>>,
    /// Port on 127.0.0.1 (0 = a free port; default: the preset's).
    pub port: Option<u16>,
    /// Docker runtime: the image.
    pub image: Option<String>,
    /// Port it listens on inside its container.
    pub container_port: Option<u16>,
    /// Environment of its process or container.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Readiness: `tcp`, `http /path`, `command <program> <args>`.
    pub probe: Option<String>,
    /// The URL clients use, with `{port}` (default `tcp://localhost:{port}`).
    pub url: Option<String>,
    /// The variable `inframock env` exports the URL as (default: the preset's, else `<NAME>_URL`).
    pub env_var: Option<String>,
    /// Put the service behind a fault proxy owned by inframock.
    #[serde(default)]
    pub faults: bool,
    /// Port of that proxy (default: the service port + 10000; 0 = a free port).
    pub faults_port: Option<u16>,
}

/// `[services.dashboard]`: the dashboard and readiness URL, started by `run` when enabled.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DashboardSection {
    /// Start it with the stack.
    #[serde(default)]
    pub enabled: bool,
    /// Port (default 8088; 0 = a free port).
    pub port: Option<u16>,
    /// Address to listen on (default 127.0.0.1); any other needs the token in
    /// `INFRAMOCK_DASHBOARD_TOKEN` (never in this file).
    pub bind: Option<std::net::IpAddr>,
}

/// `[services.faults]`: the control port of the fault proxies.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FaultsSection {
    /// Control port on 127.0.0.1 (default 8474; 0 = a free port).
    pub port: Option<u16>,
}

/// `[services.mock]`: the HTTP mock/proxy server, started by `run` when enabled.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MockSection {
    /// Start the mock server with the stack.
    #[serde(default)]
    pub enabled: bool,
    /// Port on 127.0.0.1 (default 8080; 0 = a free port).
    pub port: Option<u16>,
    /// Where requests without a matching expectation are forwarded.
    pub upstream: Option<String>,
    /// Longest wait for the upstream, in milliseconds (default 30 s; then 504).
    pub upstream_timeout_ms: Option<u64>,
    /// Most requests in flight to the upstream; beyond it a 503 at once.
    pub upstream_limit: Option<usize>,
    /// Send a second identical request to the upstream when the first has not answered after
    /// this many milliseconds; the first good answer wins.
    pub upstream_hedge_after_ms: Option<u64>,
    /// Folder of `*.json` expectations loaded at start (default `mocks`, relative to the project).
    pub mocks: Option<std::path::PathBuf>,
    /// Requests kept in the journal (default 10000).
    pub journal_size: Option<usize>,
    /// Python interpreter of handlers (default: the project's .venv, then python3).
    pub python: Option<std::path::PathBuf>,
    /// Routes by path prefix for what no expectation answers (`[[services.mock.routes]]`);
    /// `upstream` is the catch-all.
    #[serde(default)]
    pub routes: Vec<crate::mock::routes::RouteDecl>,
    /// The scenario seed's mimicked backend (`[services.mock.flaky]`), for its path when no
    /// scenario step is left.
    pub flaky: Option<crate::mock::flaky::FlakySettings>,
    /// Answer a scenario step whose status is not 200 with a bare `500`, as the seed did.
    #[serde(default)]
    pub scenario_errors_as_500: bool,
    /// Event sinks standing in for the seed's ingestion and logger services.
    #[serde(default)]
    pub sinks: Vec<crate::mock::sinks::SinkDecl>,
}

/// One service's settings.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceSection {
    /// `[services.aws]` only: the AWS engine (`moto`, `ministack`, `localstack`).
    pub engine: Option<String>,
    /// Port on 127.0.0.1 (0 = a free port).
    pub port: Option<u16>,
    /// Container image of the docker runtime.
    pub image: Option<String>,
    /// Port the service listens on inside its container.
    pub container_port: Option<u16>,
    /// Extra environment variables of its local process or its container.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Put the service behind a fault proxy owned by inframock (`inframock faults ...`).
    #[serde(default)]
    pub faults: bool,
    /// Port of that proxy on 127.0.0.1 (default: the service port + 10000; 0 = a free port).
    pub faults_port: Option<u16>,
}

/// A DynamoDB table (`[[tables]]`), billed per request.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TableDecl {
    pub name: String,
    pub hash_key: String,
    pub range_key: Option<String>,
    /// Types of key attributes other than `S` (string), e.g. `{ count = "N" }`.
    #[serde(default)]
    pub attributes: BTreeMap<String, KeyType>,
    #[serde(default)]
    pub global_secondary_indexes: Vec<IndexDecl>,
}

/// A key attribute's scalar type.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum KeyType {
    S,
    N,
    B,
}

/// A global secondary index of a table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IndexDecl {
    pub name: String,
    pub hash_key: String,
    pub range_key: Option<String>,
    /// ALL (default), KEYS_ONLY or INCLUDE.
    #[serde(default = "default_projection")]
    pub projection: Projection,
    #[serde(default)]
    pub non_key_attributes: Vec<String>,
}

fn default_projection() -> Projection {
    Projection::All
}

/// Which attributes an index carries.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Projection {
    All,
    KeysOnly,
    Include,
}

/// An S3 bucket (`[[buckets]]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BucketDecl {
    pub name: String,
    #[serde(default)]
    pub versioning: bool,
    #[serde(default)]
    pub cors: Vec<CorsRuleDecl>,
}

/// One CORS rule of a bucket.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CorsRuleDecl {
    pub id: Option<String>,
    #[serde(default)]
    pub allowed_headers: Vec<String>,
    pub allowed_methods: Vec<String>,
    pub allowed_origins: Vec<String>,
    #[serde(default)]
    pub expose_headers: Vec<String>,
    pub max_age_seconds: Option<i32>,
}

/// An SQS queue (`[[queues]]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QueueDecl {
    pub name: String,
    #[serde(default)]
    pub fifo: bool,
    #[serde(default)]
    pub content_based_deduplication: bool,
    /// Any other SQS queue attribute, by its API name.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// An SNS topic (`[[topics]]`) and its subscriptions.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TopicDecl {
    pub name: String,
    #[serde(default)]
    pub subscriptions: Vec<SubscriptionDecl>,
}

/// A subscription of a topic: `protocol = "sqs"` with `queue = NAME` (a declared queue) or any protocol
/// with `endpoint`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionDecl {
    pub protocol: String,
    pub endpoint: Option<String>,
    pub queue: Option<String>,
    /// SNS filter policy as a JSON string.
    pub filter_policy: Option<String>,
    #[serde(default)]
    pub raw_message_delivery: bool,
}

/// `[data]`
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    #[serde(default)]
    pub rules: Vec<RuleDecl>,
}

/// A data-loading rule: files of an experiment folder matching `pattern` go to `table` or `bucket`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleDecl {
    /// Glob on the file name (`*`, `?`, `[abc]`), matched against the whole name.
    pub pattern: String,
    pub table: Option<String>,
    pub bucket: Option<String>,
    /// A declared PostgreSQL service (`[services.<name>] preset = "postgres"`): the file is SQL,
    /// run in one transaction.
    pub service: Option<String>,
    /// S3 key; `${experiment}` is the folder name. Default `${experiment}/<file name>`.
    pub key: Option<String>,
    /// Gunzip the file while uploading it.
    #[serde(default)]
    pub gunzip: bool,
}

/// Why a stack file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StackFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a valid stack file: {message}")]
    Invalid { path: String, message: String },
}

impl StackFile {
    /// Parses stack-file text; `origin` names it in errors (a path, or "built-in inframock.toml").
    pub fn parse(text: &str, origin: &str) -> Result<StackFile, StackFileError> {
        let file: StackFile = toml::from_str(text).map_err(|e| StackFileError::Invalid {
            path: origin.to_string(),
            message: describe_toml_error(text, &e),
        })?;
        file.validate().map_err(|message| StackFileError::Invalid {
            path: origin.to_string(),
            message,
        })?;
        Ok(file)
    }

    /// Reads and parses the stack file at `path`.
    pub fn load(path: &Path) -> Result<StackFile, StackFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| StackFileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        StackFile::parse(&text, &path.display().to_string())
    }

    /// The built-in default stack.
    pub fn built_in() -> StackFile {
        // The built-in file is part of the binary and covered by a unit test, so it always parses.
        StackFile::parse(BUILT_IN, "built-in inframock.toml").unwrap_or_default()
    }

    /// Checks what serde cannot: each rule has exactly one target, GSIs are complete, names are unique.
    fn validate(&self) -> Result<(), String> {
        for (index, rule) in self.data.rules.iter().enumerate() {
            let which = format!(
                "[[data.rules]] #{} (pattern \"{}\")",
                index + 1,
                rule.pattern
            );
            let targets = [
                rule.table.is_some(),
                rule.bucket.is_some(),
                rule.service.is_some(),
            ];
            match targets.iter().filter(|t| **t).count() {
                0 => {
                    return Err(format!(
                    "{which} needs a target: add `table = ...`, `bucket = ...` or `service = ...`"
                ))
                }
                1 => {}
                _ => {
                    return Err(format!(
                        "{which} names more than one of `table`, `bucket`, `service`; keep one"
                    ))
                }
            }
            if rule.bucket.is_none() && (rule.key.is_some() || rule.gunzip) {
                return Err(format!(
                    "{which}: `key` and `gunzip` only apply to `bucket` rules"
                ));
            }
            if let Some(service) = &rule.service {
                let postgres = self
                    .services
                    .declared
                    .get(service)
                    .is_some_and(|s| s.preset.as_deref() == Some("postgres"));
                if !postgres {
                    return Err(format!(
                        "{which}: service \"{service}\" is not declared as a PostgreSQL service; add [services.{service}] with preset = \"postgres\""
                    ));
                }
            }
            if let Err(e) = globset::Glob::new(&rule.pattern) {
                return Err(format!("{which}: invalid glob pattern: {e}"));
            }
        }
        for table in &self.tables {
            for index in &table.global_secondary_indexes {
                if index.projection == Projection::Include && index.non_key_attributes.is_empty() {
                    return Err(format!(
                        "table \"{}\", index \"{}\": projection INCLUDE needs `non_key_attributes`",
                        table.name, index.name
                    ));
                }
            }
        }
        for topic in &self.topics {
            for sub in &topic.subscriptions {
                if sub.endpoint.is_none() && sub.queue.is_none() {
                    return Err(format!(
                        "topic \"{}\": a subscription needs `endpoint` or `queue`",
                        topic.name
                    ));
                }
            }
        }
        for tail in &self.tails {
            if tail.queue.is_some() == tail.topic.is_some() {
                return Err(format!(
                    "[[tails]] \"{}\": give exactly one of `queue` or `topic`",
                    tail.name
                ));
            }
            if tail.peek && tail.topic.is_some() {
                return Err(format!(
                    "[[tails]] \"{}\": `peek` applies to queue tails (a topic tail never takes messages from anyone)",
                    tail.name
                ));
            }
            if tail.name.is_empty() || tail.name.contains(['/', '\\']) {
                return Err(format!(
                    "[[tails]] \"{}\": the name must be a plain file name",
                    tail.name
                ));
            }
        }
        check_unique("tail", self.tails.iter().map(|t| &t.name))?;
        check_unique("table", self.tables.iter().map(|t| &t.name))?;
        check_unique("bucket", self.buckets.iter().map(|b| &b.name))?;
        check_unique("queue", self.queues.iter().map(|q| &q.name))?;
        check_unique("topic", self.topics.iter().map(|t| &t.name))?;
        Ok(())
    }
}

fn check_unique<'a>(kind: &str, names: impl Iterator<Item = &'a String>) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(format!("{kind} \"{name}\" is declared twice"));
        }
    }
    Ok(())
}

/// Renders a TOML error as "line L, column C: what is wrong".
fn describe_toml_error(text: &str, error: &toml::de::Error) -> String {
    let reason = error.message().to_string();
    match error.span() {
        Some(span) => {
            let (line, column) = line_and_column(text, span.start);
            format!("line {line}, column {column}: {reason}")
        }
        None => reason,
    }
}

/// 1-based line and column of a byte offset.
pub fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Values substituted into names: `${env}`, `${region}`, `${account}`, `${experiment}`, and
/// `${host}` (how the AWS engine reaches this machine: `localhost` for a local process,
/// `host.docker.internal` from a container).
#[derive(Debug, Clone, Default)]
pub struct NameVars<'a> {
    pub env: &'a str,
    pub region: &'a str,
    pub account: &'a str,
    pub experiment: Option<&'a str>,
    pub host: Option<&'a str>,
}

impl NameVars<'_> {
    /// Expands the variables in a declared name.
    pub fn expand(&self, template: &str) -> String {
        let mut name = template
            .replace("${env}", self.env)
            .replace("${region}", self.region)
            .replace("${account}", self.account);
        if let Some(experiment) = self.experiment {
            name = name.replace("${experiment}", experiment);
        }
        if let Some(host) = self.host {
            name = name.replace("${host}", host);
        }
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_example_declares_the_built_in_stack() {
        let example =
            StackFile::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("inframock.toml"))
                .expect("the repository's inframock.toml parses");
        let built_in = StackFile::parse(BUILT_IN, "built-in").expect("built-in parses");
        assert_eq!(
            example, built_in,
            "inframock.toml and src/default_stack.toml must declare the same stack"
        );
    }

    #[test]
    fn built_in_stack_parses_and_declares_the_original_dev_stack() {
        let file = StackFile::parse(BUILT_IN, "built-in").expect("built-in parses");
        let tables: Vec<_> = file.tables.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            tables,
            [
                "experiments-${env}",
                "samples-${env}",
                "projects-${env}",
                "plots-tables-${env}"
            ]
        );
        let samples = &file.tables[1];
        assert_eq!(
            samples.global_secondary_indexes[0].name,
            "gsiByProjectAndExperimentID"
        );
        assert_eq!(
            samples.global_secondary_indexes[0].projection,
            Projection::Include
        );
        let plots = &file.tables[3];
        assert_eq!(plots.range_key.as_deref(), Some("plotUuid"));
        let buckets: Vec<_> = file.buckets.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(
            buckets,
            [
                "biomage-source-${env}",
                "processed-matrix-${env}",
                "cell-sets-${env}",
                "plots-tables-${env}",
                "worker-results-${env}",
                "biomage-originals-${env}"
            ]
        );
        assert!(file.buckets[0].versioning);
        assert!(file.buckets[5].versioning && !file.buckets[5].cors.is_empty());
        assert_eq!(file.topics[0].name, "work-results-${env}-default");
        assert!(file.queues[0].fifo && file.queues[0].content_based_deduplication);
        assert_eq!(file.services.aws.port, Some(4566));
        assert_eq!(file.services.redis.port, Some(6379));
    }

    #[test]
    fn malformed_toml_names_file_line_and_column() {
        let text = "[services.aws]\nport = \"abc\"\n";
        let err = StackFile::parse(text, "/p/inframock.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/p/inframock.toml"), "{err}");
        assert!(err.contains("line 2, column 8"), "{err}");
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let err = StackFile::parse("[[tables]]\nname='t'\nhash_kye='id'\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("hash_kye"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn rule_without_target_or_with_two_targets_is_rejected() {
        let none = StackFile::parse("[[data.rules]]\npattern='*.json'\n", "f").unwrap_err();
        assert!(none.to_string().contains("needs a target"), "{none}");
        let both = StackFile::parse(
            "[[data.rules]]\npattern='*.json'\ntable='t'\nbucket='b'\n",
            "f",
        )
        .unwrap_err();
        assert!(both.to_string().contains("more than one"), "{both}");
        let undeclared =
            StackFile::parse("[[data.rules]]\npattern='*.sql'\nservice='db'\n", "f").unwrap_err();
        assert!(
            undeclared
                .to_string()
                .contains("add [services.db] with preset = \"postgres\""),
            "{undeclared}"
        );
        let declared = StackFile::parse(
            "[services.db]\npreset='postgres'\n[[data.rules]]\npattern='*.sql'\nservice='db'\n",
            "f",
        );
        assert!(declared.is_ok(), "{declared:?}");
    }

    #[test]
    fn include_projection_needs_attributes_and_names_are_unique() {
        let text = "[[tables]]\nname='t'\nhash_key='a'\n[[tables.global_secondary_indexes]]\nname='g'\nhash_key='b'\nprojection='INCLUDE'\n";
        assert!(StackFile::parse(text, "f")
            .unwrap_err()
            .to_string()
            .contains("non_key_attributes"));
        let dup = "[[buckets]]\nname='b'\n[[buckets]]\nname='b'\n";
        assert!(StackFile::parse(dup, "f")
            .unwrap_err()
            .to_string()
            .contains("declared twice"));
    }

    #[test]
    fn names_expand_variables() {
        let vars = NameVars {
            env: "staging",
            region: "us-east-1",
            account: "000000000000",
            experiment: Some("e1"),
            host: Some("host.docker.internal"),
        };
        assert_eq!(vars.expand("experiments-${env}"), "experiments-staging");
        assert_eq!(
            vars.expand("http://${host}:3000/v1/workResults"),
            "http://host.docker.internal:3000/v1/workResults"
        );
        assert_eq!(vars.expand("b-${env}-${account}"), "b-staging-000000000000");
        assert_eq!(vars.expand("${experiment}/r.rds"), "e1/r.rds");
        assert_eq!(vars.expand("x-${region}"), "x-us-east-1");
    }

    #[test]
    fn line_and_column_are_one_based() {
        assert_eq!(line_and_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_and_column("ab\ncd", 4), (2, 2));
    }
}
