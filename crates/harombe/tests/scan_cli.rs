//! `harombe scan`: exit 0 clean, 1 findings, 2 errors; secrets never printed.

use std::io::Write;
use std::process::{Command, Stdio};

use assert_cmd::cargo::CommandCargoExt;

fn scan(args: &[&str], stdin: Option<&[u8]>) -> (i32, String, String) {
    let mut c = Command::cargo_bin("harombe").unwrap();
    c.arg("scan")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(b) = stdin
        && let Err(e) = input.write_all(b)
    {
        // A scan refused before it reads (a bad rules file) may exit first.
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    drop(input);
    let o = child.wait_with_output().unwrap();
    (
        o.status.code().unwrap(),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

/// A syntactically valid, made-up GitHub token.
fn token() -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let body: String = (0..36u32)
        .map(|i| alphabet[((i * 37 + 11) % 62) as usize] as char)
        .collect();
    format!("ghp_{body}")
}

#[test]
fn clean_input_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("notes.txt");
    std::fs::write(
        &f,
        "please run the tests and delete the temp files afterwards\n",
    )
    .unwrap();
    let (code, out, err) = scan(&[f.to_str().unwrap()], None);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn a_planted_secret_exits_one_without_printing_it() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("config.env");
    let t = token();
    std::fs::write(&f, format!("# deploy\nGITHUB_TOKEN={t}\n")).unwrap();
    let (code, out, err) = scan(&[f.to_str().unwrap()], None);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.to_lowercase().contains("github"), "{out}");
    assert!(
        !out.contains(&t) && !err.contains(&t),
        "the secret is never printed"
    );

    let (code, out, _) = scan(
        &["-", "--format", "json"],
        Some(format!("token: {t}").as_bytes()),
    );
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(!v["findings"].as_array().unwrap().is_empty(), "{out}");
    assert!(!out.contains(&t));
}

#[test]
fn errors_exit_two_and_say_where() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = scan(&[dir.path().join("missing.txt").to_str().unwrap()], None);
    assert_eq!(code, 2);
    assert!(err.contains("missing.txt"), "{err}");

    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, "[[rules]]\nid = \"ok-rule\"\nregex = '''abc'''\n\n[[rules]]\nid = \"broken-rule\"\nregex = '''(unclosed'''\n").unwrap();
    let (code, _, err) = scan(&["-", "--rules", rules.to_str().unwrap()], Some(b"x"));
    assert_eq!(code, 2);
    assert!(err.contains("broken-rule") && err.contains("line"), "{err}");

    std::fs::write(
        &rules,
        "[[rules]]\nid = \"r\"\nregex = '''abc'''\nsurprise = 1\n",
    )
    .unwrap();
    let (code, _, err) = scan(&["-", "--rules", rules.to_str().unwrap()], Some(b"x"));
    assert_eq!(code, 2);
    assert!(err.contains("surprise"), "{err}");

    let (code, _, _) = scan(&["-", "--no-builtin"], Some(b"x"));
    assert_eq!(code, 2, "--no-builtin needs --rules");
}

#[test]
fn gitleaks_rules_alone() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, "[[rules]]\nid = \"internal-key\"\ndescription = \"internal\"\nregex = '''ikey_[a-z0-9]{16}'''\nkeywords = [\"ikey_\"]\n").unwrap();
    let (code, out, err) = scan(
        &["-", "--no-builtin", "--rules", rules.to_str().unwrap()],
        Some(b"value ikey_0123456789abcdef end"),
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("internal-key"), "{out}");
    let (code, _, _) = scan(
        &["-", "--no-builtin", "--rules", rules.to_str().unwrap()],
        Some(token().as_bytes()),
    );
    assert_eq!(code, 0, "built-in rules are off");
}

#[test]
fn compressed_input_is_inflated_and_one_that_breaks_off_is_an_error_after_its_findings() {
    let dir = tempfile::tempdir().unwrap();
    let t = token();
    // Letters that do not compress much, so the body is well past the first 64 KiB.
    let mut x: u32 = 7;
    let noise: String = (0..300_000)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            char::from(b'a' + (x >> 16) as u8 % 26)
        })
        .collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(format!("GITHUB_TOKEN={t}\n{noise}\n").as_bytes())
        .unwrap();
    let gz = gz.finish().unwrap();
    assert!(gz.len() > 150 << 10, "{}", gz.len());
    let whole = dir.path().join("body.gz");
    std::fs::write(&whole, &gz).unwrap();
    let (code, out, err) = scan(&[whole.to_str().unwrap()], None);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("github"), "{out}");

    let cut = dir.path().join("cut.gz");
    std::fs::write(&cut, &gz[..150 << 10]).unwrap();
    let (code, out, err) = scan(&[cut.to_str().unwrap()], None);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        out.contains("github"),
        "what came before the break is reported: {out}"
    );
    assert!(err.contains("cut.gz") && err.contains("deflate"), "{err}");
    assert!(!out.contains(&t) && !err.contains(&t));
    let (code, out, err) = scan(&[cut.to_str().unwrap(), "--format", "json"], None);
    assert_eq!(code, 2, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(!v["findings"].as_array().unwrap().is_empty(), "{out}");
    assert!(v["error"].as_str().unwrap().contains("deflate"), "{out}");
    assert!(!out.contains(&t));

    // Text that only starts like a zlib stream (`x^`) is scanned as text.
    let (code, out, err) = scan(
        &["-"],
        Some(format!("x^2 + y^2\nGITHUB_TOKEN={t}\n").as_bytes()),
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("github"), "{out}");
}
