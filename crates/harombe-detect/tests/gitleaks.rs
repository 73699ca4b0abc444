//! gitleaks TOML rule files: loading, errors that name the rule and line, and a
//! side-by-side run against the real gitleaks binary on a generated corpus: harombe
//! must find at least what gitleaks finds with the same rule file.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{B32, B62, B64, DIGITS, Gen, HEX};
use harombe_detect::inspect::{InspectError, ScanConfig, Scanner, parse_gitleaks_toml};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/gitleaks-rules.toml")
}

fn fixture_scanner() -> Scanner {
    let loaded = harombe_detect::inspect::load_gitleaks_file(&fixture()).unwrap();
    Scanner::new(loaded.rules, ScanConfig::default()).unwrap()
}

#[test]
fn fixture_loads_and_reports_path_only_rules_as_skipped() {
    let loaded = harombe_detect::inspect::load_gitleaks_file(&fixture()).unwrap();
    assert_eq!(loaded.title.as_deref(), Some("harombe compatibility rules"));
    assert_eq!(loaded.skipped.len(), 1);
    assert_eq!(loaded.skipped[0].id, "p12-file");
    let scanner = Scanner::new(loaded.rules, ScanConfig::default()).unwrap();
    assert_eq!(scanner.rules().len(), 8);
}

#[test]
fn go_only_syntax_and_allowlists_behave_like_gitleaks() {
    let scanner = fixture_scanner();
    let mut g = Gen::new(1);
    let hex = g.s(HEX, 40);
    let text = format!(
        "secret{{\"{hex}\"}}\napi_key = \"example_value_1234\"\napi_key = \"{}\"\ntest_api_key = \"{}\"\n",
        g.mixed(24),
        g.mixed(24)
    );
    let findings = scanner.scan_bytes(text.as_bytes());
    let found: Vec<(&str, u64)> = findings
        .iter()
        .map(|f| (f.rule_id.as_str(), f.line))
        .collect();
    assert_eq!(
        found,
        vec![("hex-secret-quoted", 1), ("api-key-assignment", 3)]
    );
    // AND allowlist: both the regex and the stopword must hold.
    let both = "postgres://u:${DB_PASS}@h\npostgres://u:${OTHER1}@h\n";
    let lines: Vec<u64> = scanner
        .scan_bytes(both.as_bytes())
        .iter()
        .map(|f| f.line)
        .collect();
    assert_eq!(lines, vec![2]);
}

#[test]
fn invalid_regex_names_rule_and_line() {
    let text = "title = \"t\"\n[[rules]]\nid = \"ok\"\nregex = '''a+'''\n\n[[rules]]\nid = \"lookahead\"\nregex = '''foo(?=bar)'''\n";
    let err = Scanner::new(
        parse_gitleaks_toml(text).unwrap().rules,
        ScanConfig::default(),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, InspectError::InvalidRegex { ref rule_id, line: Some(8), .. } if rule_id == "lookahead"),
        "{msg}"
    );
    assert!(
        msg.contains("`lookahead`") && msg.contains("line 8"),
        "{msg}"
    );
}

#[test]
fn unknown_fields_name_field_and_line() {
    for (text, field, line) in [
        (
            "[[rules]]\nid = \"a\"\nregex = 'x'\nsecretgroup = 1\n",
            "secretgroup",
            4,
        ),
        (
            "[[rules]]\nid = \"a\"\nregex = 'x'\n[rules.allowlist]\nregex = ['y']\n",
            "regex",
            5,
        ),
        ("colour = 1\n", "colour", 1),
    ] {
        let err = parse_gitleaks_toml(text).unwrap_err();
        assert!(
            matches!(&err, InspectError::UnknownField { field: f, line: Some(l) } if f == field && *l == line),
            "{text:?}: {err}"
        );
        assert!(err.to_string().contains(field));
    }
}

#[test]
fn unsupported_constructs_are_errors() {
    let err = parse_gitleaks_toml("[extend]\nuseDefault = true\n").unwrap_err();
    assert!(
        err.to_string().contains("line 1") && err.to_string().contains("extend"),
        "{err}"
    );
    let err = parse_gitleaks_toml("[[rules]]\nid = \"g\"\nregex = 'a(b)'\nsecretGroup = 3\n")
        .map(|r| Scanner::new(r.rules, ScanConfig::default()));
    let msg = err.unwrap().unwrap_err().to_string();
    assert!(
        msg.contains("`g`") && msg.contains("line 3") && msg.contains("secretGroup"),
        "{msg}"
    );
}

/// Writes a corpus with planted tokens for every fixture rule plus decoys.
fn write_corpus(dir: &Path) {
    let mut g = Gen::new(0xC0FFEE);
    let pem_body: Vec<String> = (0..8).map(|_| g.s(B64, 64)).collect();
    let files = [
        (
            "deploy.env",
            format!(
                "GITHUB_TOKEN=ghp_{}\nAWS_ACCESS_KEY_ID=AKIA{}\nSTRIPE_KEY=sk_live_{}\nAPI_KEY={}\nSECRET_TOKEN=example_token_value\n",
                g.s(B62, 36),
                g.s(B32, 16),
                g.s(B62, 32),
                g.mixed(32)
            ),
        ),
        (
            "settings.json",
            format!(
                "{{\n  \"slack\": \"xoxb-{}-{}-{}\",\n  \"db\": \"postgres://app:{}@db.internal:5432/app\",\n  \"api-key\": \"{}\",\n  \"placeholder_api_key\": \"placeholder{}\"\n}}\n",
                g.s(DIGITS, 12),
                g.s(DIGITS, 12),
                g.s(B62, 24),
                g.mixed(14),
                g.mixed(40),
                g.mixed(12)
            ),
        ),
        (
            "id_rsa",
            format!(
                "-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----\n",
                pem_body.join("\n")
            ),
        ),
        (
            "notes.md",
            format!(
                "# Notes\nRotate ghp_{} soon; secret{{\"{}\"}} is the hmac.\nASIA{} and AKIA{}.\nNothing here: ghp_short, sk_live_x, postgres://u:${{DB_PASSWORD}}@h\n",
                g.s(B62, 36),
                g.s(HEX, 40),
                g.s(B32, 16),
                g.s(B32, 16)
            ),
        ),
    ];
    for (name, content) in files {
        std::fs::write(dir.join(name), content).unwrap();
    }
}

fn gitleaks_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("HAROMBE_GITLEAKS") {
        return PathBuf::from(p);
    }
    let fallback =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/peers/venv/bin/gitleaks");
    assert!(
        fallback.exists(),
        "gitleaks not found: HAROMBE_GITLEAKS is unset and {} does not exist. Run scripts/test.sh \
         (or scripts/setup/10-python.sh then scripts/setup/30-secret-scanners.sh and source \
         target/peers/env.d/scanners) to install it",
        fallback.display()
    );
    fallback
}

#[test]
fn finds_at_least_what_gitleaks_finds() {
    let gitleaks = gitleaks_binary();
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    std::fs::create_dir(&corpus).unwrap();
    write_corpus(&corpus);
    let report = dir.path().join("report.json");
    let out = Command::new(&gitleaks)
        .args([
            "dir",
            "--no-banner",
            "--max-decode-depth",
            "0",
            "--exit-code",
            "0",
            "--report-format",
            "json",
            "-c",
        ])
        .arg(fixture())
        .arg("--report-path")
        .arg(&report)
        .arg(&corpus)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e}; run scripts/test.sh",
                gitleaks.display()
            )
        });
    assert!(
        out.status.success(),
        "gitleaks failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let findings: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();

    let theirs: BTreeSet<(String, String, String)> = findings
        .iter()
        .map(|f| {
            let file = Path::new(f["File"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (
                file,
                f["RuleID"].as_str().unwrap().to_owned(),
                f["Secret"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let rules_hit: BTreeSet<&str> = theirs.iter().map(|t| t.1.as_str()).collect();
    assert!(
        rules_hit.len() >= 7,
        "gitleaks found too little to compare: {theirs:?}"
    );

    let scanner = fixture_scanner();
    let mut ours = BTreeSet::new();
    for entry in std::fs::read_dir(&corpus).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        for f in scanner.scan_reader_to_vec(&data[..]).unwrap() {
            ours.insert((
                file.clone(),
                f.rule_id.clone(),
                String::from_utf8_lossy(&data[f.span.range()]).into_owned(),
            ));
        }
    }
    let missed: Vec<_> = theirs.difference(&ours).collect();
    assert!(
        missed.is_empty(),
        "harombe missed what gitleaks found: {missed:?}\nharombe: {ours:?}"
    );
}
