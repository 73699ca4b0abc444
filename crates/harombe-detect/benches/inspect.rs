//! Content-inspection benchmark (harness = false; prints figures, asserts nothing).
//!
//! `cargo bench -p harombe-detect --bench inspect` prints:
//! - built-in rules on clean text (target >= 1 GB/s), on ordinary text without secrets
//!   (the `inspect/ordinary.txt` sample of prose, code, JSON and logs, repeated) and on
//!   text dense with secrets (target >= 200 MB/s), whole-buffer API, on one thread and
//!   with the default of one thread per core (payloads split in 4 MiB parts);
//! - latency of a 1 KB JSON-ish payload (target <= 2 µs);
//! - a 1 GiB stream through `scan_reader` (a chunk per core at a time) with peak RSS
//!   (VmHWM) before and after;
//! - the same on-disk corpus scanned by harombe and by each peer (gitleaks, Kingfisher
//!   with --no-validate, detect-secrets) found through HAROMBE_GITLEAKS /
//!   HAROMBE_KINGFISHER / HAROMBE_DETECT_SECRETS (scripts/test.sh sets them), with MB/s
//!   and findings count.
//!
//! Every harombe figure is given twice: by wall time and by CPU time (of the scanning
//! thread, `/proc/thread-self/schedstat`, or of the process, `/proc/self/stat`, where
//! several threads scan), which leaves out the time neighbours on shared cores held the
//! CPU.
//!
//! `HAROMBE_BENCH_QUICK=1` shrinks every size for a smoke run.

use std::hint::black_box;
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use harombe_detect::inspect::{ScanConfig, Scanner, builtin_rules, builtin_secrets};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn s(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n)
            .map(|_| char::from(alphabet[(self.next() % alphabet.len() as u64) as usize]))
            .collect()
    }
}
const B62: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const WORDS: &[&str] = &[
    "the",
    "gateway",
    "forwards",
    "each",
    "tool",
    "call",
    "after",
    "policy",
    "checks",
    "and",
    "writes",
    "an",
    "audit",
    "record",
    "with",
    "its",
    "decision;",
    "operators",
    "review",
    "held",
    "calls",
    "in",
    "dashboard",
    "when",
    "risk",
    "is",
    "high.",
    "Run",
    "tests",
    "before",
    "deploy",
    "version",
    "2.4.1",
    "on",
    "2024-05-17",
    "at",
    "12:30",
    "UTC.",
    "Contact",
    "ops",
    "if",
    "latency",
    "exceeds",
    "200",
    "ms.",
];

fn clean_text(len: usize) -> Vec<u8> {
    let mut rng = Rng(0x1234_5678);
    let mut out = Vec::with_capacity(len + 64);
    while out.len() < len {
        out.extend_from_slice(WORDS[(rng.next() % WORDS.len() as u64) as usize].as_bytes());
        out.push(if rng.next().is_multiple_of(12) {
            b'\n'
        } else {
            b' '
        });
    }
    out.truncate(len);
    out
}

fn secret(rng: &mut Rng) -> String {
    match rng.next() % 6 {
        0 => format!("GITHUB_TOKEN=ghp_{}", rng.s(B62, 36)),
        1 => format!(
            "aws_access_key_id = AKIA{}",
            rng.s(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
        ),
        2 => format!("STRIPE_KEY=sk_live_{}", rng.s(B62, 32)),
        3 => format!(
            "SLACK_BOT_TOKEN=xoxb-{}-{}-{}",
            rng.s(b"0123456789", 12),
            rng.s(b"0123456789", 12),
            rng.s(B62, 24)
        ),
        4 => format!("api_key = \"{}7q\"", rng.s(B62, 30)),
        _ => format!("npm_token: npm_{}", rng.s(B62, 36)),
    }
}

/// Ordinary text without secrets: prose, code, JSON and logs whose identifiers hold
/// keywords (`token`, `key`, `secret`), the built-in sample repeated.
fn ordinary_text(len: usize) -> Vec<u8> {
    let sample = include_bytes!("../src/inspect/ordinary.txt");
    let mut out = Vec::with_capacity(len + sample.len());
    while out.len() < len {
        out.extend_from_slice(sample);
    }
    out.truncate(len);
    out
}

/// Text with a secret on roughly every other line (~1 per 100 bytes).
fn dense_text(len: usize) -> Vec<u8> {
    let mut rng = Rng(0xDEAD_BEEF);
    let mut out = Vec::with_capacity(len + 128);
    let clean = clean_text(64 << 10);
    while out.len() < len {
        let at = (rng.next() % (clean.len() as u64 - 64)) as usize;
        out.extend_from_slice(&clean[at..at + 40]);
        out.push(b'\n');
        out.extend_from_slice(secret(&mut rng).as_bytes());
        out.push(b'\n');
    }
    out
}

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

/// Nanoseconds this thread has spent on a CPU.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Nanoseconds all of this process's threads have spent on a CPU (user and system time,
/// in clock ticks of 10 ms).
fn process_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name (which ends with the last `)`): utime and
            // stime are the 12th and 13th.
            let rest = &s[s.rfind(')')? + 2..];
            let mut f = rest.split_whitespace().skip(11);
            let (u, k): (u64, u64) = (f.next()?.parse().ok()?, f.next()?.parse().ok()?);
            Some((u + k) * 10_000_000)
        })
        .unwrap_or(0)
}

/// Wall and CPU time per scan (of all threads), and the findings of the last scan.
fn time_scan(scanner: &Scanner, data: &[u8], min: Duration) -> (Duration, Duration, usize) {
    let mut runs = 0u32;
    let mut found = 0;
    let cpu = process_cpu_ns();
    let start = Instant::now();
    while start.elapsed() < min || runs == 0 {
        found = black_box(scanner.scan_bytes(black_box(data))).len();
        runs += 1;
    }
    let cpu = Duration::from_nanos(process_cpu_ns() - cpu);
    (start.elapsed() / runs, cpu / runs, found)
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// A generated stream of `remaining` bytes: clean text with a token every ~1 MB.
struct Stream {
    remaining: u64,
    block: Vec<u8>,
    pos: usize,
}
impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf
            .len()
            .min(self.block.len() - self.pos)
            .min(self.remaining as usize);
        buf[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos = (self.pos + n) % self.block.len();
        self.remaining -= n as u64;
        Ok(n)
    }
}

fn peer(name: &str, env: &str, corpus: &Path, work: &Path) {
    let Some(bin) = std::env::var_os(env) else {
        println!("  {name:<15} not installed ({env} unset; run scripts/test.sh)");
        return;
    };
    let report = work.join(format!("{name}.json"));
    let mut cmd = Command::new(&bin);
    match name {
        "gitleaks" => cmd
            .args([
                "dir",
                "--no-banner",
                "--exit-code",
                "0",
                "--report-format",
                "json",
                "--report-path",
            ])
            .arg(&report)
            .arg(corpus),
        "kingfisher" => cmd
            .args(["scan", "--no-validate", "--format", "json", "--output"])
            .arg(&report)
            .arg(corpus),
        // detect-secrets reports nothing for a path outside its working directory (and
        // scans only git-tracked files of a directory): run it beside the file. Without
        // `--no-verify` some plugins call their vendor's API for each finding (like
        // Kingfisher without `--no-validate`), which offline waits for each timeout.
        _ => cmd
            .current_dir(corpus.parent().expect("corpus is in a directory"))
            .args(["scan", "--no-verify"])
            .arg(corpus.file_name().expect("corpus has a name")),
    };
    let start = Instant::now();
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) => {
            println!("  {name:<15} failed to start: {e}");
            return;
        }
    };
    let elapsed = start.elapsed();
    let text = if name == "detect-secrets" {
        out.stdout
    } else {
        std::fs::read(&report).unwrap_or_default()
    };
    let json: serde_json::Value = serde_json::from_slice(&text).unwrap_or(serde_json::Value::Null);
    let count = match name {
        "gitleaks" => json.as_array().map_or(0, Vec::len),
        "kingfisher" => json["findings"].as_array().map_or(0, Vec::len),
        _ => json["results"].as_object().map_or(0, |m| {
            m.values().filter_map(|v| v.as_array()).map(Vec::len).sum()
        }),
    };
    let size = std::fs::metadata(corpus).map(|m| m.len()).unwrap_or(0) as usize;
    println!(
        "  {name:<15} {:>9.1} MB/s  {count:>7} findings  ({:.2} s wall, process start included; exit {:?})",
        mbps(size, elapsed),
        elapsed.as_secs_f64(),
        out.status.code()
    );
}

fn main() {
    let quick = std::env::var_os("HAROMBE_BENCH_QUICK").is_some();
    let scale = if quick { 16 } else { 1 };
    let all = Scanner::builtin();
    let one_thread = ScanConfig {
        threads: 1,
        ..ScanConfig::default()
    };
    let all_one = Scanner::new(builtin_rules(), one_thread.clone()).unwrap();
    let secrets_only = Scanner::new(builtin_secrets(), one_thread).unwrap();
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "harombe inspect benchmark ({} built-in rules; quick={quick})",
        builtin_rules().len()
    );

    // 1. Bounded memory on a long stream (first, so VmHWM reflects it).
    let stream_len: u64 = (1u64 << 30) / scale as u64;
    let mut block = clean_text(1 << 20);
    block.extend_from_slice(b"\nGITHUB_TOKEN=ghp_");
    block.extend_from_slice(Rng(9).s(B62, 36).as_bytes());
    block.push(b'\n');
    let before = vm_hwm_kib();
    let cpu = process_cpu_ns();
    let start = Instant::now();
    let mut found = 0u64;
    all.scan_reader(
        Stream {
            remaining: stream_len,
            block,
            pos: 0,
        },
        |_| found += 1,
    )
    .unwrap();
    let elapsed = start.elapsed();
    let cpu = Duration::from_nanos(process_cpu_ns() - cpu);
    println!(
        "stream {} MiB via scan_reader: {:.0} MB/s wall, {:.0} MB/s CPU, {found} findings, peak RSS {} MiB (before {} MiB)",
        stream_len >> 20,
        mbps(stream_len as usize, elapsed),
        mbps(stream_len as usize, cpu),
        vm_hwm_kib() / 1024,
        before / 1024
    );

    // 2. Throughput, whole-buffer API.
    let min = Duration::from_millis(if quick { 200 } else { 2000 });
    let clean = clean_text((64 << 20) / scale);
    let dense = dense_text((16 << 20) / scale);
    let ordinary = ordinary_text((64 << 20) / scale);
    let threads = format!("{cores} threads");
    for (label, per, scanner) in [
        ("all built-in", "1 thread", &all_one),
        ("all built-in", threads.as_str(), &all),
        ("secrets only", "1 thread", &secrets_only),
    ] {
        for (text, data) in [
            ("clean text", &clean),
            ("ordinary", &ordinary),
            ("dense text", &dense),
        ] {
            let (d, c, n) = time_scan(scanner, data, min);
            println!(
                "{label:<13} {per:<10} {text:<10} {:>4} MiB: {:>7.0} MB/s wall, {:>7.0} MB/s CPU ({n} findings)",
                data.len() >> 20,
                mbps(data.len(), d),
                mbps(data.len(), c)
            );
        }
    }

    // 3. Latency of a 1 KB payload (a tool-call argument object).
    let mut payload = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"http_request","arguments":{"url":"https://api.example.test/v1/items?page=2","method":"POST","headers":{"content-type":"application/json"},"body":""#.to_vec();
    payload.extend_from_slice(&clean_text(1024 - payload.len() - 8));
    payload.extend_from_slice(b"\"}}}\n");
    let iters = if quick { 20_000 } else { 200_000 };
    for (label, scanner) in [("all built-in", &all_one), ("secrets only", &secrets_only)] {
        let cpu = cpu_ns();
        let start = Instant::now();
        for _ in 0..iters {
            black_box(scanner.scan_bytes(black_box(&payload)));
        }
        let per = start.elapsed() / iters;
        let cpu = Duration::from_nanos(cpu_ns() - cpu) / iters;
        println!(
            "{label:<13} {} B payload: {:.2} µs wall, {:.2} µs CPU per scan",
            payload.len(),
            per.as_secs_f64() * 1e6,
            cpu.as_secs_f64() * 1e6
        );
    }

    // 4. Side by side with the peers on the same on-disk corpus.
    let work = tempfile::tempdir().unwrap();
    let corpus = work.path().join("corpus.txt");
    let mut text = dense_text((4 << 20) / scale);
    text.extend_from_slice(&clean_text((12 << 20) / scale));
    std::fs::write(&corpus, &text).unwrap();
    println!(
        "same corpus ({} MiB, {} planted secrets) side by side:",
        text.len() >> 20,
        text.len() / 2 / 100
    );
    // Repeated for a second or more: process CPU time comes in ticks of 10 ms.
    let (mut n, mut runs) = (0, 0u32);
    let cpu = process_cpu_ns();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) || runs == 0 {
        n = all
            .scan_reader_to_vec(std::fs::File::open(&corpus).unwrap())
            .unwrap()
            .len();
        runs += 1;
    }
    let elapsed = start.elapsed() / runs;
    let cpu = Duration::from_nanos(process_cpu_ns() - cpu) / runs;
    println!(
        "  {:<15} {:>9.1} MB/s  {n:>7} findings (in process; {:.1} MB/s CPU)",
        "harombe",
        mbps(text.len(), elapsed),
        mbps(text.len(), cpu)
    );
    peer("gitleaks", "HAROMBE_GITLEAKS", &corpus, work.path());
    peer("kingfisher", "HAROMBE_KINGFISHER", &corpus, work.path());
    peer(
        "detect-secrets",
        "HAROMBE_DETECT_SECRETS",
        &corpus,
        work.path(),
    );
}
