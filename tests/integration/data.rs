//! Data loading end to end against a real moto_server: every naming rule, plain and typed JSON,
//! idempotent reload (0 bytes the second time, generated data kept), bad input, interrupted reload.

use std::collections::HashMap;

use crate::support::{clients, gzip, noise, object, runtime, text, Project};
use aws_sdk_dynamodb::types::AttributeValue;

const E1: &str = "e52b39624588791a7889e39c617f669e";

fn get_item(
    rt: &tokio::runtime::Runtime,
    aws: &crate::support::Clients,
    table: &str,
    key: &[(&str, &str)],
) -> Option<HashMap<String, AttributeValue>> {
    rt.block_on(async {
        let mut request = aws.dynamodb.get_item().table_name(table);
        for (name, value) in key {
            request = request.key(*name, AttributeValue::S(value.to_string()));
        }
        request.send().await.expect("get_item").item
    })
}

/// The ETag of an S3 object (changes when the object is written again).
fn etag(
    rt: &tokio::runtime::Runtime,
    aws: &crate::support::Clients,
    bucket: &str,
    key: &str,
) -> Option<String> {
    rt.block_on(async {
        aws.s3
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .expect("head_object")
            .e_tag
    })
}

/// A project whose data folder exercises every default rule.
fn project_with_every_rule() -> (Project, Vec<u8>, Vec<u8>) {
    let project = Project::new();
    let rds = noise(300_000, 1);
    let processed = noise(50_000, 2);
    project.write(
        &format!("data/{E1}/mock_experiment.json"),
        r#"{"experimentId": "e52b39624588791a7889e39c617f669e", "experimentName": "KO lungs",
            "meta": {"organism": "mmusculus", "type": "10x"}, "maxFraction": 0.1000000000000000055511151231257827,
            "count": 123456789012345678901234567890, "tags": [], "nothing": null, "ok": true}"#,
    );
    project.write(
        &format!("data/{E1}/mock_samples.json"),
        r#"{"experimentId": {"S": "e52b39624588791a7889e39c617f669e"}, "projectUuid": {"S": "p1"},
            "rbac_can_write": {"SS": ["admin", "me"]}, "blob": {"B": "aGVsbG8="},
            "samples": {"M": {"ids": {"L": [{"S": "s1"}]}, "n": {"N": "3.50"}}}}"#,
    );
    project.write(
        &format!("data/{E1}/mock_projects.json"),
        r#"{"projectUuid": "p1", "projects": {"name": "P", "experiments": ["e52b39624588791a7889e39c617f669e"]}}"#,
    );
    project.write(
        &format!("data/{E1}/mock_plots_tables.json"),
        r#"{"records": [{"experimentId": "e52b39624588791a7889e39c617f669e", "plotUuid": "a", "plotData": [{"u": 8890.2}]},
                        {"experimentId": "e52b39624588791a7889e39c617f669e", "plotUuid": "b", "config": {}}]}"#,
    );
    project.write(
        &format!("data/{E1}/mock_cell_sets.json"),
        r#"{"cellSets": []}"#,
    );
    project.write(&format!("data/{E1}/biomage-source.r.rds.gz"), gzip(&rds));
    project.write(
        &format!("data/{E1}/processed-matrix.r.rds.gz"),
        gzip(&processed),
    );
    project.write(&format!("data/{E1}/notes.txt"), "not data");
    project.write(&format!("data/{E1}/mock_samples.json~"), "{ broken backup");
    project.write(&format!("data/{E1}/.hidden.json"), "{");
    project.write("data/e2/r.rds.gz", gzip(b"second experiment"));
    project.write("data/e2/mock_plots_tables.json", r#"{"records": []}"#);
    project.write("data/README.md", "top-level files are not experiments");
    (project, rds, processed)
}

#[test]
fn every_rule_loads_into_the_right_place_and_reload_uploads_nothing() {
    let (project, rds, processed) = project_with_every_rule();
    let report = project.start(&[]);
    let total = &report["data"]["total"];
    assert_eq!(total["failed"], 0, "{}", report["data"]);
    assert_eq!(
        total["items"], 5,
        "1 experiment + 1 sample + 1 project + 2 plots"
    );
    assert_eq!(total["objects"], 4);
    assert_eq!(
        total["ignored"], 3,
        "notes.txt, the backup and the hidden file"
    );
    let experiments: Vec<_> = report["data"]["experiments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["experiment"].clone())
        .collect();
    assert_eq!(
        experiments,
        [serde_json::json!("e2"), serde_json::json!(E1)],
        "sorted by name"
    );

    let rt = runtime();
    let aws = clients(&rt, &project.endpoint());
    let experiment = get_item(
        &rt,
        &aws,
        "experiments-development",
        &[("experimentId", E1)],
    )
    .expect("experiment item");
    assert_eq!(
        experiment["maxFraction"],
        AttributeValue::N("0.1000000000000000055511151231257827".into())
    );
    assert_eq!(
        experiment["count"],
        AttributeValue::N("123456789012345678901234567890".into())
    );
    assert_eq!(experiment["nothing"], AttributeValue::Null(true));
    assert_eq!(experiment["ok"], AttributeValue::Bool(true));
    assert_eq!(experiment["tags"], AttributeValue::L(vec![]));
    let AttributeValue::M(meta) = &experiment["meta"] else {
        panic!("meta is a map")
    };
    assert_eq!(meta["organism"], AttributeValue::S("mmusculus".into()));

    let samples =
        get_item(&rt, &aws, "samples-development", &[("experimentId", E1)]).expect("samples item");
    let AttributeValue::Ss(mut writers) = samples["rbac_can_write"].clone() else {
        panic!("a string set")
    };
    writers.sort();
    assert_eq!(writers, ["admin", "me"]);
    assert_eq!(samples["blob"], AttributeValue::B(b"hello".to_vec().into()));
    let AttributeValue::M(inner) = &samples["samples"] else {
        panic!("map")
    };
    // Engine difference: moto keeps a number's text as written; MiniStack normalises it as
    // DynamoDB itself does (3.50 -> 3.5). The 30- and 34-digit numbers above stay exact on both.
    let normalised = if crate::support::engine() == "ministack" {
        "3.5"
    } else {
        "3.50"
    };
    assert_eq!(inner["n"], AttributeValue::N(normalised.into()));
    // The GSI answers for the typed projectUuid.
    let by_project = rt.block_on(async {
        aws.dynamodb
            .query()
            .table_name("samples-development")
            .index_name("gsiByProjectAndExperimentID")
            .key_condition_expression("projectUuid = :p")
            .expression_attribute_values(":p", AttributeValue::S("p1".into()))
            .send()
            .await
            .unwrap()
            .count
    });
    assert_eq!(by_project, 1);
    assert!(get_item(&rt, &aws, "projects-development", &[("projectUuid", "p1")]).is_some());
    assert!(get_item(
        &rt,
        &aws,
        "plots-tables-development",
        &[("experimentId", E1), ("plotUuid", "b")]
    )
    .is_some());

    assert_eq!(
        object(
            &rt,
            &aws,
            "biomage-source-development",
            &format!("{E1}/r.rds")
        ),
        rds,
        "gunzipped"
    );
    assert_eq!(
        object(
            &rt,
            &aws,
            "processed-matrix-development",
            &format!("{E1}/r.rds")
        ),
        processed
    );
    assert_eq!(
        object(&rt, &aws, "cell-sets-development", E1),
        br#"{"cellSets": []}"#,
        "uploaded as-is"
    );
    assert_eq!(
        object(&rt, &aws, "biomage-source-development", "e2/r.rds"),
        b"second experiment"
    );

    // Generated data that is not from the data folder.
    rt.block_on(async {
        aws.s3
            .put_object()
            .bucket("biomage-source-development")
            .key(format!("{E1}/generated.h5ad"))
            .body(b"generated".to_vec().into())
            .send()
            .await
            .unwrap();
        aws.dynamodb
            .put_item()
            .table_name("plots-tables-development")
            .item("experimentId", AttributeValue::S(E1.into()))
            .item("plotUuid", AttributeValue::S("made-by-the-ui".into()))
            .send()
            .await
            .unwrap();
    });
    let etag_before = etag(
        &rt,
        &aws,
        "biomage-source-development",
        &format!("{E1}/r.rds"),
    );

    let reload = project.run_json(&["reload-data", "--json"]);
    assert_eq!(
        reload["total"]["bytes"], 0,
        "nothing uploaded the second time: {}",
        reload["total"]
    );
    assert_eq!(
        reload["total"]["unchanged"], 9,
        "4 objects and 5 JSON files"
    );
    assert_eq!(reload["total"]["objects"], 0);
    assert_eq!(
        reload["total"]["items"], 0,
        "unchanged JSON files are not written again"
    );
    let etag_after = etag(
        &rt,
        &aws,
        "biomage-source-development",
        &format!("{E1}/r.rds"),
    );
    assert_eq!(etag_before, etag_after);
    assert_eq!(
        object(
            &rt,
            &aws,
            "biomage-source-development",
            &format!("{E1}/generated.h5ad")
        ),
        b"generated"
    );
    assert!(get_item(
        &rt,
        &aws,
        "plots-tables-development",
        &[("experimentId", E1), ("plotUuid", "made-by-the-ui")]
    )
    .is_some());

    // A changed source is uploaded again, and only it; a forced reload uploads all.
    let changed = noise(1000, 9);
    project.write(
        &format!("data/{E1}/biomage-source.r.rds.gz"),
        gzip(&changed),
    );
    let reload = project.run_json(&["reload-data", "--json", "--experiment", E1]);
    assert_eq!(reload["total"]["objects"], 1);
    assert_eq!(reload["total"]["bytes"], 1000);
    assert_eq!(
        reload["experiments"].as_array().unwrap().len(),
        1,
        "--experiment limits the load"
    );
    assert_eq!(
        object(
            &rt,
            &aws,
            "biomage-source-development",
            &format!("{E1}/r.rds")
        ),
        changed
    );
    // An item changed outside inframock comes back with --force (or when its file changes).
    rt.block_on(async {
        aws.dynamodb
            .put_item()
            .table_name("experiments-development")
            .item("experimentId", AttributeValue::S(E1.into()))
            .item(
                "experimentName",
                AttributeValue::S("renamed in the UI".into()),
            )
            .send()
            .await
            .unwrap();
    });
    let forced = project.run_json(&["reload-data", "--json", "--force"]);
    assert_eq!(forced["total"]["objects"], 4);
    assert_eq!(forced["total"]["items"], 5);
    let experiment = get_item(
        &rt,
        &aws,
        "experiments-development",
        &[("experimentId", E1)],
    )
    .unwrap();
    assert_eq!(
        experiment["experimentName"],
        AttributeValue::S("KO lungs".into())
    );
}

#[test]
fn a_fresh_machine_skips_unchanged_objects_through_the_stored_fingerprint() {
    let (project, _, _) = project_with_every_rule();
    project.start(&[]);
    // Without any local record (another machine), the HEAD comparison still skips every object;
    // the JSON files are written again, since only this machine knew they were loaded.
    std::fs::remove_file(project.path().join(".inframock/fingerprints.json")).unwrap();
    std::fs::remove_file(project.path().join(".inframock/loaded-items.json")).unwrap();
    let reload = project.run_json(&["reload-data", "--json"]);
    assert_eq!(reload["total"]["unchanged"], 4);
    assert_eq!(reload["total"]["bytes"], 0);
    assert_eq!(reload["total"]["items"], 5);
}

#[test]
fn bad_files_fail_alone_and_lose_nothing_already_loaded() {
    let project = Project::new();
    let good = noise(20_000, 3);
    project.write("data/good/r.rds.gz", gzip(&good));
    project.write(
        "data/good/mock_experiment.json",
        r#"{"experimentId": "good"}"#,
    );
    project.write("data/bad/r.rds.gz", gzip(b"first version"));
    project.write(
        "data/bad/mock_experiment.json",
        r#"{"experimentId": "bad", "v": 1}"#,
    );
    project.start(&[]);
    let rt = runtime();
    let aws = clients(&rt, &project.endpoint());

    // Now break the "bad" experiment in every way at once.
    let mut corrupt = gzip(&noise(100_000, 4));
    let middle = corrupt.len() / 2;
    corrupt[middle..middle + 64].fill(0xff);
    project.write("data/bad/r.rds.gz", corrupt);
    project.write(
        "data/bad/mock_experiment.json",
        "{\n  \"experimentId\": \"bad\",\n  \"v\": \n}",
    );
    project.write(
        "data/bad/mock_plots_tables.json",
        r#"{"records": [{"experimentId": "bad", "plotUuid": "x"}, {"experimentId": "bad"}]}"#,
    );
    std::os::unix::fs::symlink(
        "/nonexistent/file",
        project.path().join("data/bad/mock_samples.json"),
    )
    .unwrap();
    project.write(
        "data/good/mock_projects.json",
        r#"{"projectUuid": "p-good"}"#,
    );

    let output = project.run(&["reload-data"]);
    assert_eq!(output.status.code(), Some(3), "some files failed");
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("bad/mock_experiment.json: invalid JSON at line 4, column 1"),
        "{stderr}"
    );
    assert!(
        stderr.contains("bad/r.rds.gz: corrupt gzip data"),
        "{stderr}"
    );
    assert!(
        stderr.contains("bad/mock_plots_tables.json: item 1: missing key attribute `plotUuid`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("bad/mock_samples.json: cannot read"),
        "{stderr}"
    );
    // Every good file still loaded.
    assert!(get_item(
        &rt,
        &aws,
        "projects-development",
        &[("projectUuid", "p-good")]
    )
    .is_some());
    // Nothing previously loaded was lost or half-written.
    assert_eq!(
        object(&rt, &aws, "biomage-source-development", "bad/r.rds"),
        b"first version"
    );
    let item = get_item(
        &rt,
        &aws,
        "experiments-development",
        &[("experimentId", "bad")],
    )
    .unwrap();
    assert_eq!(item["v"], AttributeValue::N("1".into()));
    assert!(
        get_item(
            &rt,
            &aws,
            "plots-tables-development",
            &[("experimentId", "bad"), ("plotUuid", "x")]
        )
        .is_none(),
        "a file with a bad item writes none of its items"
    );
    assert_eq!(
        object(&rt, &aws, "biomage-source-development", "good/r.rds"),
        good
    );
}

#[test]
fn missing_targets_and_folders_are_clear_errors() {
    let project = Project::new();
    project.write(
        "inframock.toml",
        "[[tables]]\nname = \"t-${env}\"\nhash_key = \"id\"\n\
         [[data.rules]]\npattern = \"*.json\"\ntable = \"undeclared-${env}\"\n\
         [[data.rules]]\npattern = \"*.bin\"\nbucket = \"nobucket\"\n\
         [[data.rules]]\npattern = \"*.txt\"\ntable = \"t-${env}\"\n",
    );
    project.write("data/x/a.json", r#"{"id": "1"}"#);
    project.write("data/x/b.bin", "bytes");
    project.write("data/x/c.txt", r#"{"id": "ok"}"#);
    let output = project.start_output(&[]);
    assert_eq!(
        output.status.code(),
        Some(3),
        "the stack runs, but some files failed"
    );
    let report: serde_json::Value = crate::support::data_of(&output.stdout);
    let files = report["data"]["files"].as_array().unwrap();
    let error = |file: &str| {
        files.iter().find(|f| f["file"] == file).unwrap()["error"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert!(
        error("a.json").contains("table undeclared-development does not exist"),
        "{files:?}"
    );
    assert!(
        error("b.bin").contains("bucket nobucket does not exist"),
        "{files:?}"
    );
    assert_eq!(
        report["data"]["total"]["items"], 1,
        "the good file still loads"
    );

    let missing = project.run(&["reload-data", "--data", "no-such-folder"]);
    assert_eq!(missing.status.code(), Some(1));
    let stderr = text(&missing.stderr);
    assert!(stderr.contains("no-such-folder does not exist"), "{stderr}");
    let unknown = project.run(&["reload-data", "--experiment", "nope"]);
    assert!(
        text(&unknown.stderr).contains("experiment nope is not in"),
        "{}",
        text(&unknown.stderr)
    );
}

#[test]
fn dry_run_prints_the_plan_and_touches_nothing() {
    let (project, _, _) = project_with_every_rule();
    project.start(&["--no-populate"]);
    let output = project.run(&["reload-data", "--dry-run"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains(&format!(
            "new         biomage-source.r.rds.gz -> s3://biomage-source-development/{E1}/r.rds (would write: the object is missing)"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("ignore      notes.txt (no rule matches)"),
        "{stdout}"
    );
    assert!(
        !project.path().join(".inframock/loaded-items.json").exists(),
        "no record written"
    );
    let rt = runtime();
    let aws = clients(&rt, &project.endpoint());
    let count = rt.block_on(async {
        aws.s3
            .list_objects_v2()
            .bucket("biomage-source-development")
            .send()
            .await
            .unwrap()
            .key_count
    });
    assert_eq!(count, Some(0));
    assert!(get_item(
        &rt,
        &aws,
        "experiments-development",
        &[("experimentId", E1)]
    )
    .is_none());
}

/// Each file's `(result, verdict)` from a load report's `files`.
fn file_results(
    report: &serde_json::Value,
) -> std::collections::BTreeMap<String, (String, String)> {
    report["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| {
            (
                format!(
                    "{}/{}",
                    f["experiment"].as_str().unwrap(),
                    f["file"].as_str().unwrap()
                ),
                (
                    f["result"].as_str().unwrap().to_string(),
                    f["verdict"].as_str().unwrap_or("").to_string(),
                ),
            )
        })
        .collect()
}

#[test]
fn dry_run_says_per_file_what_the_real_run_then_does() {
    let (project, _, _) = project_with_every_rule();
    project.start(&[]);
    // Changed content, a new experiment, an object with other content, a file that no longer
    // validates, and a file whose items were deleted from its table behind inframock's back.
    project.write(
        &format!("data/{E1}/mock_experiment.json"),
        r#"{"experimentId": "e52b39624588791a7889e39c617f669e", "experimentName": "renamed"}"#,
    );
    project.write("data/e3/r.rds.gz", gzip(b"third experiment"));
    project.write("data/e2/r.rds.gz", gzip(b"second experiment, new version"));
    project.write(
        &format!("data/{E1}/mock_plots_tables.json"),
        r#"{"records": [{"plotUuid": "no experiment id"}]}"#,
    );
    let rt = runtime();
    let aws = clients(&rt, &project.endpoint());
    rt.block_on(async {
        aws.dynamodb
            .delete_item()
            .table_name("projects-development")
            .key(
                "projectUuid",
                aws_sdk_dynamodb::types::AttributeValue::S("p1".into()),
            )
            .send()
            .await
            .unwrap();
    });
    let record = project.path().join(".inframock/loaded-items.json");
    let record_before = std::fs::read(&record).unwrap();

    let dry = project.run(&["reload-data", "--dry-run", "--json"]);
    assert_eq!(
        dry.status.code(),
        Some(3),
        "a file would fail: {}",
        text(&dry.stderr)
    );
    let dry: serde_json::Value = crate::support::data_of(&dry.stdout);
    assert_eq!(
        std::fs::read(&record).unwrap(),
        record_before,
        "the dry run wrote nothing"
    );
    let planned = file_results(&dry);
    let verdict = |file: &str| planned[file].clone();
    let would = |verdict: &str| ("would_write".to_string(), verdict.to_string());
    assert_eq!(
        verdict(&format!("{E1}/mock_experiment.json")),
        would("changed")
    );
    assert_eq!(verdict("e3/r.rds.gz"), would("new"));
    assert_eq!(verdict("e2/r.rds.gz"), would("changed"));
    assert_eq!(
        verdict(&format!("{E1}/mock_projects.json")),
        would("missing")
    );
    assert_eq!(
        verdict(&format!("{E1}/mock_plots_tables.json")).0,
        "would_fail"
    );
    assert_eq!(
        verdict(&format!("{E1}/biomage-source.r.rds.gz")).0,
        "unchanged"
    );

    // The real run does exactly that, file by file.
    let real = project.run(&["reload-data", "--json"]);
    assert_eq!(real.status.code(), Some(3));
    let done = file_results(&crate::support::data_of(&real.stdout));
    assert_eq!(
        done.keys().collect::<Vec<_>>(),
        planned.keys().collect::<Vec<_>>()
    );
    for (file, (dry_result, _)) in &planned {
        let real_result = &done[file].0;
        let expected: &[&str] = match dry_result.as_str() {
            "unchanged" => &["unchanged"],
            "would_write" => &["items", "uploaded", "ran"],
            "would_fail" => &["failed"],
            other => panic!("{file}: unexpected dry-run result {other}"),
        };
        assert!(
            expected.contains(&real_result.as_str()),
            "{file}: dry run {dry_result}, real run {real_result}"
        );
    }
}

#[test]
fn large_and_multi_member_sources_stream_as_multipart_and_a_corrupt_one_keeps_the_old_object() {
    let project = Project::new();
    // Above the single-PutObject limit (64 MiB): streamed in parts.
    let big = noise(70 * 1024 * 1024 + 123, 5);
    project.write("data/big/r.rds.gz", gzip(&big));
    // Two gzip members: the trailer names only the last one's size, so the whole-read refuses
    // and the streamed path takes over.
    let first = noise(9 * 1024 * 1024, 6);
    project.write(
        "data/multi/r.rds.gz",
        crate::support::gzip_members(&[&first, b"tail"]),
    );
    let report = project.start(&[]);
    assert_eq!(report["data"]["total"]["failed"], 0, "{}", report["data"]);
    assert_eq!(
        report["data"]["total"]["bytes"],
        big.len() + first.len() + 4
    );
    let rt = runtime();
    let aws = clients(&rt, &project.endpoint());
    assert!(object(&rt, &aws, "biomage-source-development", "big/r.rds") == big);
    let mut joined = first.clone();
    joined.extend_from_slice(b"tail");
    assert!(object(&rt, &aws, "biomage-source-development", "multi/r.rds") == joined);

    // Corrupt the middle of the big source: the multipart upload is aborted, the old object stays.
    let mut corrupt = gzip(&noise(70 * 1024 * 1024, 7));
    let middle = corrupt.len() / 2;
    corrupt[middle..middle + 64].fill(0xff);
    project.write("data/big/r.rds.gz", corrupt);
    let output = project.run(&["reload-data", "--experiment", "big"]);
    assert_eq!(output.status.code(), Some(3));
    assert!(
        text(&output.stderr).contains("corrupt gzip data"),
        "{}",
        text(&output.stderr)
    );
    assert!(object(&rt, &aws, "biomage-source-development", "big/r.rds") == big);
}

#[test]
fn an_interrupted_reload_converges_when_run_again() {
    let project = Project::new();
    let mut expected = Vec::new();
    for index in 0..24 {
        let body = noise(6 * 1024 * 1024, 100 + index);
        project.write(&format!("data/x{index:02}/r.rds.gz"), gzip(&body));
        project.write(
            &format!("data/x{index:02}/mock_experiment.json"),
            format!(r#"{{"experimentId": "x{index:02}"}}"#),
        );
        expected.push(body);
    }
    project.start(&["--no-populate"]);
    let mut child = project
        .command(&["reload-data"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let rt = runtime();
    let aws = clients(&rt, &project.endpoint());
    let stored = || {
        rt.block_on(async {
            aws.s3
                .list_objects_v2()
                .bucket("biomage-source-development")
                .send()
                .await
                .unwrap()
                .key_count
                .unwrap_or(0)
        })
    };
    // SIGKILL as soon as the first object landed: half-way through.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while stored() == 0 {
        assert!(std::time::Instant::now() < deadline, "nothing was loaded");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let at_kill = stored();
    assert!(
        at_kill < 24,
        "the reload was interrupted before the end ({at_kill} of 24 stored)"
    );
    let again = project.run_json(&["reload-data", "--json"]);
    assert_eq!(again["total"]["failed"], 0);
    for (index, body) in expected.iter().enumerate() {
        assert!(
            object(
                &rt,
                &aws,
                "biomage-source-development",
                &format!("x{index:02}/r.rds")
            ) == *body,
            "x{index:02}"
        );
        assert!(get_item(
            &rt,
            &aws,
            "experiments-development",
            &[("experimentId", &format!("x{index:02}"))]
        )
        .is_some());
    }
    let third = project.run_json(&["reload-data", "--json"]);
    assert_eq!(
        third["total"]["bytes"], 0,
        "converged: nothing left to upload"
    );
}

#[test]
fn the_example_data_folder_loads() {
    let project = Project::new();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    let report = project.start(&["--data", example.to_str().unwrap()]);
    assert_eq!(report["data"]["total"]["failed"], 0, "{}", report["data"]);
    let id = report["data"]["experiments"][0]["experiment"]
        .as_str()
        .unwrap()
        .to_string();
    let rt = runtime();
    let aws = clients(&rt, &project.endpoint());
    let keys = rt.block_on(async {
        aws.s3
            .list_objects_v2()
            .bucket("biomage-source-development")
            .prefix(format!("{id}/"))
            .send()
            .await
            .unwrap()
            .contents
            .unwrap_or_default()
            .into_iter()
            .filter_map(|o| o.key)
            .collect::<Vec<_>>()
    });
    assert_eq!(keys, [format!("{id}/r.rds")]);
}

#[test]
fn many_large_files_load_concurrently_without_stalling() {
    // More multipart uploads at once than the shared part budget holds (16 files, 8 parts).
    let project = Project::new();
    let mut bodies = Vec::new();
    for index in 0..18u64 {
        let body = noise(9 * 1024 * 1024 + index as usize, 200 + index);
        // Half are multi-member (streamed multipart), half single-member (whole PutObject).
        let source = if index % 2 == 0 {
            crate::support::gzip_members(&[&body[..body.len() - 10], &body[body.len() - 10..]])
        } else {
            gzip(&body)
        };
        project.write(&format!("data/m{index:02}/r.rds.gz"), source);
        bodies.push(body);
    }
    project.start(&["--no-populate"]);
    let mut child = project
        .command(&["reload-data", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(240);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("reload-data did not finish: concurrent uploads stalled");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(status.success());
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    let report = crate::support::data_of(stdout.as_bytes());
    assert_eq!(report["total"]["objects"], 18);
    let rt = runtime();
    let aws = clients(&rt, &project.endpoint());
    for (index, body) in bodies.iter().enumerate() {
        assert!(
            object(
                &rt,
                &aws,
                "biomage-source-development",
                &format!("m{index:02}/r.rds")
            ) == *body
        );
    }
}
