//! Naming rules: which file of an experiment folder goes where.

use globset::{Glob, GlobMatcher};

use crate::stack_file::{NameVars, RuleDecl};

/// Where a matched file goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Items into a DynamoDB table.
    Table { table: String },
    /// One object into an S3 bucket; `key` may still contain `${experiment}`.
    Object {
        bucket: String,
        key: String,
        gunzip: bool,
    },
    /// SQL run against a declared PostgreSQL service, in one transaction.
    Sql { service: String },
}

/// A compiled rule: a glob on the whole file name and its target.
#[derive(Debug, Clone)]
pub struct Rule {
    matcher: GlobMatcher,
    pub target: Target,
}

/// The ordered rule list; the first matching rule wins.
#[derive(Debug, Clone)]
pub struct Rules {
    rules: Vec<Rule>,
}

/// Why a file is not loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// Starts with a dot.
    Hidden,
    /// An editor backup or swap file (`x~`, `#x#`, `.swp`, `.bak`, ...).
    Backup,
    /// A folder inside an experiment folder (the loader does not recurse).
    Directory,
    /// No rule matches the name.
    NoRule,
    /// A FIFO, socket or device: never opened (reading one could block forever).
    NotRegular,
}

impl SkipReason {
    /// Short text for summaries.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Hidden => "hidden",
            SkipReason::Backup => "editor backup",
            SkipReason::Directory => "folder",
            SkipReason::NoRule => "no rule matches",
            SkipReason::NotRegular => "not a regular file (FIFO, socket or device): never opened",
        }
    }
}

impl Rules {
    /// Compiles declared rules, expanding `${env}`/`${region}`/`${account}` in targets.
    pub fn compile(decls: &[RuleDecl], vars: &NameVars<'_>) -> Result<Rules, String> {
        let mut rules = Vec::new();
        for decl in decls {
            let matcher = Glob::new(&decl.pattern)
                .map_err(|e| format!("invalid pattern {:?}: {e}", decl.pattern))?
                .compile_matcher();
            let target = match (&decl.table, &decl.bucket, &decl.service) {
                (Some(table), None, None) => Target::Table {
                    table: vars.expand(table),
                },
                (None, Some(bucket), None) => Target::Object {
                    bucket: vars.expand(bucket),
                    key: vars.expand(decl.key.as_deref().unwrap_or("${experiment}/${file}")),
                    gunzip: decl.gunzip,
                },
                (None, None, Some(service)) => Target::Sql {
                    service: service.clone(),
                },
                _ => {
                    return Err(format!(
                        "rule {:?} needs exactly one of table, bucket, service",
                        decl.pattern
                    ))
                }
            };
            rules.push(Rule { matcher, target });
        }
        Ok(Rules { rules })
    }

    /// The rule for a file name, or why the file is skipped.
    pub fn classify(&self, file_name: &str) -> Result<&Rule, SkipReason> {
        if file_name.starts_with('.') {
            return Err(SkipReason::Hidden);
        }
        if is_editor_backup(file_name) {
            return Err(SkipReason::Backup);
        }
        self.rules
            .iter()
            .find(|rule| rule.matcher.is_match(file_name))
            .ok_or(SkipReason::NoRule)
    }
}

/// Editor backups and swap files: `name~`, `#name#`, `name.swp`/`.swo`/`.bak`/`.orig`/`.tmp`.
pub fn is_editor_backup(file_name: &str) -> bool {
    file_name.ends_with('~')
        || (file_name.starts_with('#') && file_name.ends_with('#'))
        || [".swp", ".swo", ".bak", ".orig", ".tmp"]
            .iter()
            .any(|suffix| file_name.ends_with(suffix))
}

/// The S3 key of a file: `${experiment}` and `${file}` expanded.
pub fn object_key(template: &str, experiment: &str, file_name: &str) -> String {
    template
        .replace("${experiment}", experiment)
        .replace("${file}", file_name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack_file::StackFile;

    fn default_rules() -> Rules {
        let stack = StackFile::built_in();
        let vars = NameVars {
            env: "development",
            region: "eu-west-1",
            account: "000000000000",
            experiment: None,
            host: None,
        };
        Rules::compile(&stack.data.rules, &vars).unwrap()
    }

    fn target(name: &str) -> Result<Target, SkipReason> {
        default_rules().classify(name).map(|r| r.target.clone())
    }

    fn table(name: &str) -> Target {
        Target::Table { table: name.into() }
    }

    #[test]
    fn documented_dynamodb_rules_with_wildcards() {
        assert_eq!(
            target("mock_experiment.json"),
            Ok(table("experiments-development"))
        );
        assert_eq!(
            target("mock_experiment-e52b.json"),
            Ok(table("experiments-development"))
        );
        assert_eq!(
            target("mock_samples.json"),
            Ok(table("samples-development"))
        );
        assert_eq!(
            target("mock_samples_v2.json"),
            Ok(table("samples-development"))
        );
        assert_eq!(
            target("mock_plots_tables.json"),
            Ok(table("plots-tables-development"))
        );
        assert_eq!(
            target("mock_projects.json"),
            Ok(table("projects-development"))
        );
    }

    #[test]
    fn s3_rules_of_the_original() {
        let rds = Target::Object {
            bucket: "biomage-source-development".into(),
            key: "${experiment}/r.rds".into(),
            gunzip: true,
        };
        assert_eq!(target("r.rds.gz"), Ok(rds.clone()));
        assert_eq!(target("biomage-source.r.rds.gz"), Ok(rds));
        assert_eq!(
            target("processed-matrix.r.rds.gz"),
            Ok(Target::Object {
                bucket: "processed-matrix-development".into(),
                key: "${experiment}/r.rds".into(),
                gunzip: true
            })
        );
        assert_eq!(
            target("mock_cell_sets.json"),
            Ok(Target::Object {
                bucket: "cell-sets-development".into(),
                key: "${experiment}".into(),
                gunzip: false
            })
        );
    }

    #[test]
    fn the_dot_is_literal_and_the_whole_name_must_match() {
        assert_eq!(target("rXrds.gz"), Err(SkipReason::NoRule));
        assert_eq!(target("r.rds.gz.old"), Err(SkipReason::NoRule));
        assert_eq!(target("mock_experiment.json.old"), Err(SkipReason::NoRule));
        assert_eq!(target("xmock_experiment.json"), Err(SkipReason::NoRule));
        assert_eq!(target("mock_experimentXjson"), Err(SkipReason::NoRule));
        assert_eq!(target("README.md"), Err(SkipReason::NoRule));
        assert_eq!(target("mock_cell_sets_v2.json"), Err(SkipReason::NoRule));
    }

    #[test]
    fn hidden_files_and_editor_backups_are_skipped() {
        assert_eq!(target(".mock_experiment.json"), Err(SkipReason::Hidden));
        assert_eq!(target(".DS_Store"), Err(SkipReason::Hidden));
        assert_eq!(target("mock_experiment.json~"), Err(SkipReason::Backup));
        assert_eq!(target("#mock_samples.json#"), Err(SkipReason::Backup));
        assert_eq!(target("mock_samples.json.swp"), Err(SkipReason::Backup));
        assert_eq!(target("r.rds.gz.bak"), Err(SkipReason::Backup));
    }

    #[test]
    fn first_matching_rule_wins() {
        let vars = NameVars::default();
        let decls: Vec<RuleDecl> = vec![
            RuleDecl {
                pattern: "special*.json".into(),
                table: Some("a".into()),
                bucket: None,
                service: None,
                key: None,
                gunzip: false,
            },
            RuleDecl {
                pattern: "*.json".into(),
                table: None,
                bucket: Some("b".into()),
                service: None,
                key: None,
                gunzip: false,
            },
        ];
        let rules = Rules::compile(&decls, &vars).unwrap();
        assert_eq!(rules.classify("special1.json").unwrap().target, table("a"));
        let other = rules.classify("x.json").unwrap();
        assert_eq!(
            other.target,
            Target::Object {
                bucket: "b".into(),
                key: "${experiment}/${file}".into(),
                gunzip: false
            }
        );
        assert_eq!(
            object_key("${experiment}/${file}", "e1", "x.json"),
            "e1/x.json"
        );
    }
}
