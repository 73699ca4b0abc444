//! Loader for gitleaks-format TOML rule files (`[[rules]]` with `id`, `description`,
//! `regex`, `keywords`, `entropy`, `secretGroup`, `allowlist` / `allowlists`, `tags`,
//! plus the global `[allowlist]` / `[[allowlists]]`).
//!
//! gitleaks regexes are Go RE2. The engine already runs in ASCII mode like RE2; the
//! remaining differences are translated here (`\Q..\E` quoting, `\C`, `{` used as a
//! literal). Errors name the rule id and the TOML line; unknown fields are errors.
//! Path-only rules (no `regex`) cannot apply to content and are returned as skipped.

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::InspectError;
use super::rule::{Allowlist, RegexDialect, RegexTarget, RuleSpec, Severity};

/// Window used for gitleaks rules: gitleaks runs a rule over the whole fragment once a
/// keyword occurs, so give the regex more room than built-in rules need.
const GITLEAKS_WINDOW: usize = 4096;

/// The usable content of a gitleaks rule file.
#[derive(Debug, Clone)]
pub struct GitleaksRules {
    /// The file's `title`, if any.
    pub title: Option<String>,
    /// Rules, ready for [`super::Scanner::new`] (regexes are compiled there).
    pub rules: Vec<RuleSpec>,
    /// Rules that cannot apply to content (path-only rules).
    pub skipped: Vec<SkippedRule>,
}

/// A rule the loader did not take, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedRule {
    /// The rule's id.
    pub id: String,
    /// 1-based line of the rule's id.
    pub line: usize,
    /// Why it was skipped.
    pub reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    title: Option<String>,
    #[serde(rename = "minVersion")]
    _min_version: Option<String>,
    extend: Option<Spanned<toml::Table>>,
    allowlist: Option<RawAllowlist>,
    allowlists: Option<Vec<RawAllowlist>>,
    #[serde(default)]
    rules: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Option<Spanned<String>>,
    description: Option<String>,
    regex: Option<Spanned<String>>,
    #[serde(rename = "secretGroup")]
    secret_group: Option<usize>,
    entropy: Option<f64>,
    keywords: Option<Vec<String>>,
    tags: Option<Vec<String>>,
    path: Option<String>,
    allowlist: Option<RawAllowlist>,
    allowlists: Option<Vec<RawAllowlist>>,
    #[serde(rename = "skipReport")]
    skip_report: Option<bool>,
    required: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawAllowlist {
    #[serde(rename = "description")]
    _description: Option<String>,
    condition: Option<String>,
    #[serde(rename = "regexTarget")]
    regex_target: Option<String>,
    #[serde(default)]
    regexes: Vec<String>,
    #[serde(default)]
    stopwords: Vec<String>,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    commits: Vec<String>,
    #[serde(rename = "targetRules", default)]
    target_rules: Vec<String>,
}

/// 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Reads and parses a gitleaks rule file.
pub fn load_gitleaks_file(path: &Path) -> Result<GitleaksRules, InspectError> {
    parse_gitleaks_toml(&std::fs::read_to_string(path)?)
}

/// Parses gitleaks-format TOML. Regexes are compiled later by [`super::Scanner::new`],
/// whose errors also carry the rule id and line.
pub fn parse_gitleaks_toml(text: &str) -> Result<GitleaksRules, InspectError> {
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start));
        let message = e.message().to_owned();
        match message
            .strip_prefix("unknown field `")
            .and_then(|m| m.split('`').next())
        {
            Some(field) => InspectError::UnknownField {
                field: field.to_owned(),
                line,
            },
            None => InspectError::RuleFile { line, message },
        }
    })?;
    if let Some(extend) = &raw.extend {
        return Err(InspectError::RuleFile {
            line: Some(line_of(text, extend.span().start)),
            message: "[extend] is not supported: put all rules in one file (harombe's built-in \
                      rules can be added with the scanner's builtin set instead)"
                .into(),
        });
    }
    let global: Vec<RawAllowlist> = raw
        .allowlist
        .into_iter()
        .chain(raw.allowlists.unwrap_or_default())
        .collect();
    let mut out = GitleaksRules {
        title: raw.title,
        rules: Vec::new(),
        skipped: Vec::new(),
    };
    for spanned in raw.rules {
        let rule_line = line_of(text, spanned.span().start);
        let rule = spanned.into_inner();
        let Some(id) = rule.id else {
            return Err(InspectError::InvalidRule {
                rule_id: "<unnamed>".into(),
                line: Some(rule_line),
                message: "rule has no id".into(),
            });
        };
        let id_line = line_of(text, id.span().start);
        let id = id.into_inner();
        if let Some(req) = &rule.required {
            return Err(InspectError::InvalidRule {
                rule_id: id,
                line: Some(line_of(text, req.span().start)),
                message: "composite rules ([[rules.required]]) are not supported".into(),
            });
        }
        let Some(regex) = rule.regex else {
            let reason = if rule.path.is_some() {
                "path-only rule: content scanning has no file path"
            } else {
                "rule has neither regex nor path"
            };
            out.skipped.push(SkippedRule {
                id,
                line: id_line,
                reason: reason.into(),
            });
            continue;
        };
        if rule.skip_report == Some(true) {
            out.skipped.push(SkippedRule {
                id,
                line: id_line,
                reason: "skipReport = true".into(),
            });
            continue;
        }
        let regex_line = line_of(text, regex.span().start);
        let mut spec = RuleSpec::new(
            &id,
            rule.description.as_deref().unwrap_or(""),
            regex.get_ref(),
        );
        spec.dialect = RegexDialect::Go;
        spec.line = Some(regex_line);
        spec.keywords = rule
            .keywords
            .unwrap_or_default()
            .into_iter()
            .filter(|k| !k.is_empty())
            .collect();
        spec.entropy = rule.entropy.filter(|e| *e > 0.0);
        spec.secret_group = rule.secret_group.filter(|g| *g > 0);
        spec.tags = rule.tags.unwrap_or_default();
        spec.severity = Severity::High;
        spec.window = GITLEAKS_WINDOW;
        if rule.path.is_some() {
            // A path condition narrows the rule in gitleaks; content has no path, so the
            // rule is applied everywhere (more findings, never fewer).
        }
        let own = rule
            .allowlist
            .into_iter()
            .chain(rule.allowlists.unwrap_or_default());
        let applicable_global = global
            .iter()
            .filter(|a| a.target_rules.is_empty() || a.target_rules.contains(&id))
            .cloned();
        for al in own.chain(applicable_global) {
            if let Some(al) = convert_allowlist(al, &id, regex_line)? {
                spec.allowlists.push(al);
            }
        }
        out.rules.push(spec);
    }
    Ok(out)
}

fn convert_allowlist(
    al: RawAllowlist,
    id: &str,
    line: usize,
) -> Result<Option<Allowlist>, InspectError> {
    let regex_target = match al.regex_target.as_deref() {
        None | Some("secret" | "") => RegexTarget::Secret,
        Some("match") => RegexTarget::Match,
        Some("line") => RegexTarget::Line,
        Some(other) => {
            return Err(InspectError::InvalidRule {
                rule_id: id.to_owned(),
                line: Some(line),
                message: format!("unknown allowlist regexTarget `{other}` (secret, match, line)"),
            });
        }
    };
    let require_all = match al
        .condition
        .as_deref()
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        None | Some("OR" | "") => false,
        Some("AND") => true,
        Some(other) => {
            return Err(InspectError::InvalidRule {
                rule_id: id.to_owned(),
                line: Some(line),
                message: format!("unknown allowlist condition `{other}` (OR, AND)"),
            });
        }
    };
    let path_or_commit = !al.paths.is_empty() || !al.commits.is_empty();
    if require_all && path_or_commit {
        // Can never hold for content without a path or commit.
        return Ok(None);
    }
    if al.regexes.is_empty() && al.stopwords.is_empty() {
        return Ok(None);
    }
    Ok(Some(Allowlist {
        regexes: al.regexes,
        regex_target,
        stopwords: al.stopwords,
        require_all,
    }))
}

/// Rewrites Go RE2 syntax the Rust parser reads differently: `\Q...\E` quoting, `\C`
/// (any byte), and `{` that does not start a repetition (a literal in Go).
pub(crate) fn translate_go_regex(go: &str) -> Result<String, String> {
    let chars: Vec<char> = go.chars().collect();
    let mut out = String::with_capacity(go.len() + 8);
    let mut i = 0;
    let mut in_class = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                let Some(&next) = chars.get(i + 1) else {
                    return Err("trailing backslash".into());
                };
                match next {
                    'Q' => {
                        i += 2;
                        while i < chars.len()
                            && !(chars[i] == '\\' && chars.get(i + 1) == Some(&'E'))
                        {
                            let ch = chars[i];
                            if ch.is_ascii_punctuation() || ch == ' ' {
                                out.push('\\');
                            }
                            out.push(ch);
                            i += 1;
                        }
                        i += 2; // skip \E (or run past the end: Go allows an open \Q)
                        continue;
                    }
                    'C' if !in_class => out.push_str("(?s-u:.)"),
                    'Z' => return Err("`\\Z` is not valid RE2 syntax (use `\\z`)".into()),
                    _ => {
                        out.push('\\');
                        out.push(next);
                    }
                }
                i += 2;
                continue;
            }
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                i += 1;
                // A leading `^` and a leading `]` are part of the class.
                if chars.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                if chars.get(i) == Some(&']') {
                    out.push_str("\\]");
                    i += 1;
                }
                continue;
            }
            '[' if in_class && chars.get(i + 1) == Some(&':') => {
                // POSIX class [:name:]
                let end = chars[i..]
                    .iter()
                    .collect::<String>()
                    .find(":]")
                    .map(|p| i + p + 2);
                let end = end.unwrap_or(i + 1);
                out.extend(&chars[i..end]);
                i = end;
                continue;
            }
            '[' if in_class => out.push_str("\\["),
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            '{' if !in_class && !starts_repetition(&chars[i..]) => out.push_str("\\{"),
            _ => out.push(c),
        }
        i += 1;
    }
    Ok(out)
}

/// Whether `s` (starting at `{`) is `{n}`, `{n,}` or `{n,m}`.
fn starts_repetition(s: &[char]) -> bool {
    let mut i = 1;
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < s.len() && s[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > start
    };
    if !digits(&mut i) {
        return false;
    }
    if s.get(i) == Some(&',') {
        i += 1;
        digits(&mut i);
    }
    s.get(i) == Some(&'}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates_go_only_syntax() {
        assert_eq!(translate_go_regex(r"\Qa.b\E+").unwrap(), r"a\.b+");
        assert_eq!(translate_go_regex(r"x{2,3}\${").unwrap(), r"x{2,3}\$\{");
        assert_eq!(
            translate_go_regex(r"[[:alpha:]{]").unwrap(),
            r"[[:alpha:]{]"
        );
        assert_eq!(translate_go_regex(r"(?i)a\z").unwrap(), r"(?i)a\z");
        assert!(translate_go_regex(r"a\Z").is_err());
    }

    #[test]
    fn unknown_field_names_field_and_line() {
        let text = "title = \"t\"\n\n[[rules]]\nid = \"x\"\nregex = \"abc\"\nsecretgroup = 1\n";
        let err = parse_gitleaks_toml(text).unwrap_err();
        assert!(
            matches!(&err, InspectError::UnknownField { field, line: Some(6) } if field == "secretgroup"),
            "{err}"
        );
    }
}
