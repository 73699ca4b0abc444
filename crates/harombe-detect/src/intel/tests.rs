use super::feeds::*;
use super::*;
use serde_json::json;
use std::time::Duration;
use time::macros::datetime;

#[test]
fn plain_list_keeps_good_lines_and_numbers_bad_ones() {
    let text = "# blocklist\n203.0.113.9\n198.51.100.0/24  scanner\nevil.example\n\nnot a valid entry!\nhttps://bad.example.net/x.exe\n2001:db8::/48\n999.1.1.1\n";
    let r = parse_plain(text, "plain", 0.8);
    assert_eq!(r.indicators.len(), 5, "{r:?}");
    assert_eq!(
        r.errors.iter().map(|e| e.line).collect::<Vec<_>>(),
        vec![6, 9]
    );
    assert_eq!(r.indicators[1].label.as_deref(), Some("scanner"));
}

#[test]
fn spamhaus_drop_format() {
    let text = "; Spamhaus DROP List 2025/01/01 - (c) 2025 The Spamhaus Project\n; Last-Modified: Wed, 1 Jan 2025\n1.10.16.0/20 ; SBL256894\n2.56.192.0/22 ; SBL459831\nbogus ; SBL1\n";
    let r = parse_spamhaus_drop(text, "drop", 1.0);
    assert_eq!(r.indicators.len(), 2);
    assert_eq!(r.indicators[0].label.as_deref(), Some("SBL256894"));
    assert_eq!(r.errors.len(), 1);
    assert_eq!(r.errors[0].line, 5);
    let idx = IntelIndex::from_indicators(&r.indicators);
    assert_eq!(
        idx.lookup_ip("1.10.20.1".parse().unwrap())
            .unwrap()
            .label
            .as_deref(),
        Some("SBL256894")
    );
}

#[test]
fn abuse_ch_csv_exports() {
    let urlhaus = "################################################################\n# abuse.ch URLhaus Database Dump (CSV - recent URLs)\n#\n# id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter\n\"3338000\",\"2025-01-05 10:01:02\",\"http://45.95.1.2:8080/bins/x86\",\"online\",\"2025-01-05 10:01:02\",\"malware_download\",\"elf,mirai\",\"https://urlhaus.abuse.ch/url/3338000/\",\"geenensp\"\n\"3338001\",\"2025-01-05 10:01:03\",\"\",\"online\",\"\",\"malware_download\",\"\",\"\",\"x\"\n\"3338002\",\"2025-01-05 10:01:04\",\"https://evil.example.org/a.js\",\"offline\n";
    let r = parse_abuse_ch_csv(urlhaus, "urlhaus", 0.9);
    assert_eq!(r.indicators.len(), 1, "{r:?}");
    assert_eq!(r.indicators[0].label.as_deref(), Some("malware_download"));
    assert!(matches!(r.indicators[0].value, IndicatorValue::Url(_)));
    assert_eq!(
        r.errors.iter().map(|e| e.line).collect::<Vec<_>>(),
        vec![6, 7]
    );

    let threatfox = "# \"first_seen_utc\",\"ioc_id\",\"ioc_value\",\"ioc_type\",\"threat_type\",\"fk_malware\",\"malware_alias\",\"malware_printable\",\"last_seen_utc\",\"confidence_level\",\"reference\",\"tags\",\"anonymous\",\"reporter\"\n\"2025-01-05 09:00:00\", \"1337\", \"185.220.101.4:443\", \"ip:port\", \"botnet_cc\", \"win.cobalt_strike\", \"\", \"Cobalt Strike\", \"\", \"100\", \"\", \"\", \"0\", \"x\"\n\"2025-01-05 09:00:01\", \"1338\", \"c2.badhost.example\", \"domain\", \"botnet_cc\", \"x\", \"\", \"X\", \"\", \"50\", \"\", \"\", \"0\", \"x\"\n";
    let r = parse_abuse_ch_csv(threatfox, "threatfox", 0.9);
    assert_eq!(r.errors, vec![]);
    assert_eq!(
        r.indicators[0].value,
        IndicatorValue::Ip("185.220.101.4".parse().unwrap())
    );
    assert_eq!(
        r.indicators[1].value,
        IndicatorValue::Domain("c2.badhost.example".into())
    );
    assert_eq!(r.indicators[0].label.as_deref(), Some("botnet_cc"));

    let feodo = "# Feodo Tracker\n# first_seen_utc,dst_ip,dst_port,c2_status,last_online,malware\n2025-01-01 10:00:00,50.16.16.211,443,online,2025-01-05,QakBot\n2025-01-01 10:00:00,not-an-ip,443,online,2025-01-05,QakBot\n";
    let r = parse_abuse_ch_csv(feodo, "feodo", 1.0);
    assert_eq!(r.indicators.len(), 1);
    assert_eq!(r.indicators[0].label.as_deref(), Some("QakBot"));
    assert_eq!(r.errors[0].line, 4);
}

#[test]
fn stix_bundle_indicators() {
    let bundle = json!({
        "type": "bundle", "id": "bundle--1",
        "objects": [
            {"type": "identity", "id": "identity--1", "name": "x"},
            {"type": "indicator", "spec_version": "2.1", "id": "indicator--a", "pattern_type": "stix",
             "pattern": "[ipv4-addr:value = '198.51.100.7']", "name": "C2", "confidence": 85},
            {"type": "indicator", "id": "indicator--b", "pattern_type": "stix",
             "pattern": "[domain-name:value = 'evil.com'] OR [url:value = 'http://x.test/it\\'s']"},
            {"type": "indicator", "id": "indicator--c", "pattern_type": "stix",
             "pattern": "[file:hashes.'SHA-256' = 'AABB']"},
            {"type": "indicator", "id": "indicator--d", "pattern_type": "sigma", "pattern": "x"},
            {"type": "indicator", "id": "indicator--e", "pattern": "[ipv4-addr:value = 'nope']"},
            {"type": "indicator", "id": "indicator--f", "revoked": true, "pattern": "[ipv4-addr:value = '1.1.1.1']"},
            {"type": "indicator", "id": "indicator--g", "pattern": "[ipv6-addr:value = '2001:db8::/32']"}
        ]
    });
    let r = parse_stix(&bundle.to_string(), "stix", 0.7);
    assert_eq!(r.indicators.len(), 5, "{r:?}");
    assert_eq!(r.indicators[0].score, 0.85);
    assert_eq!(
        r.indicators[2].value,
        IndicatorValue::Url("http://x.test/it's".into())
    );
    let lines: Vec<usize> = r.errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![5, 6]);
    assert!(r.errors[0].reason.contains("indicator--d"));
    let idx = IntelIndex::from_indicators(&r.indicators);
    assert!(idx.lookup_domain("a.evil.com").is_some());
    assert!(idx.lookup_domain("notevil.com").is_none());
    assert!(idx.lookup_hash("aabb").is_some());
    assert!(idx.lookup_ip("2001:db8::9".parse().unwrap()).is_some());
    assert!(
        parse_stix("{nope", "s", 1.0).errors[0]
            .reason
            .contains("not JSON")
    );
}

#[test]
fn feed_set_schedule_and_failures_keep_old_data() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("list.txt");
    std::fs::write(&file, "203.0.113.5\n").unwrap();
    let hour = Duration::from_secs(3600);
    let mut set = FeedSet::new(vec![
        FeedSpec {
            name: "local".into(),
            format: FeedFormat::Plain,
            location: FeedLocation::File { path: file.clone() },
            refresh: hour,
            score: 0.9,
        },
        FeedSpec {
            name: "remote".into(),
            format: FeedFormat::SpamhausDrop,
            location: FeedLocation::Url {
                url: "https://feeds.test/drop.txt".into(),
            },
            refresh: hour,
            score: 1.0,
        },
    ]);
    let t0 = datetime!(2025-01-01 00:00 UTC);
    let mut ok_fetch = |_: &str| Ok("192.0.2.0/24 ; SBL1\n".to_owned());
    let (changed, failed) = set.refresh_due(t0, &mut ok_fetch);
    assert_eq!(changed.len(), 2);
    assert!(failed.is_empty());
    assert_eq!(set.index().len(), 2);
    // Not due again before the interval.
    let (changed, _) = set.refresh_due(t0 + time::Duration::minutes(30), &mut ok_fetch);
    assert!(changed.is_empty());
    // Due after it; the remote fails and keeps its indicators.
    let mut bad_fetch = |_: &str| {
        Err(IntelError::Transport {
            provider: "feed",
            reason: "connection refused".into(),
        })
    };
    let (changed, failed) = set.refresh_due(t0 + time::Duration::minutes(61), &mut bad_fetch);
    assert_eq!(changed, vec!["local".to_owned()]);
    assert_eq!(failed.len(), 1);
    assert!(
        set.index()
            .lookup_ip("192.0.2.1".parse().unwrap())
            .is_some()
    );
    // A failed feed is retried after a quarter interval.
    let (changed, _) = set.refresh_due(t0 + time::Duration::minutes(77), &mut ok_fetch);
    assert_eq!(changed, vec!["remote".to_owned()]);
}

#[test]
fn destinations_verdicts() {
    let idx = IntelIndex::from_indicators(
        &parse_plain("evil.example\n198.51.100.0/24\n", "list", 0.95).indicators,
    );
    let dests = crate::features::find_destinations(
        &json!({"u": "https://cdn.evil.example/x", "ip": "198.51.100.4", "ok": "docs.example.org"}),
    );
    let v = check_destinations(&idx, &dests);
    assert_eq!(v.checked, 3);
    assert_eq!(v.matches.len(), 2);
    assert_eq!(v.score, Some(0.95));
    let clean = check_destinations(
        &idx,
        &crate::features::find_destinations(&json!({"u": "https://docs.rs"})),
    );
    assert_eq!(clean.score, Some(0.0));
    let none = check_destinations(&idx, &[]);
    assert_eq!(none.score, None);
    assert_eq!(none.signal().score, None);
}
