//! Inspectors beyond secrets, on the same engine: prompt-injection markers aimed at the
//! model (tag `injection`) and personal data (tag `pii`). Patterns are anchored on
//! phrasing addressed to a model or on checksummed formats, so ordinary prose and
//! random digit runs stay quiet.

use super::builtin::B;
use super::rule::{RuleSpec, Severity, Validator};

/// Prompt-injection markers (tag `injection`): instructions to drop earlier
/// instructions, role-play overrides, chat-template tokens and fake turns, hidden text.
pub fn builtin_prompt_injection() -> Vec<RuleSpec> {
    use Severity::{High, Low, Medium};
    vec![
        B::new(
            "injection-ignore-instructions",
            "Text telling the model to ignore or override its earlier instructions",
            r"(?i)\b(?:ignore|disregard|forget|override|bypass)\s+(?:about\s+)?(?:(?:all|any|the|your|my|of|these|those)\s+){0,3}(?:previous|prior|above|earlier|preceding|former|existing|original|system|developer|safety)\s+(?:instructions?|prompts?|rules|directions|directives|guidelines|messages|context|commands|guardrails)\b",
            &["ignore", "disregard", "forget", "override", "bypass"],
        )
        .tags(&["injection", "instruction-override"]).severity(High).done(),
        B::new(
            "injection-new-instructions",
            "Text announcing new or secret instructions for the model",
            r"(?i)\b(?:new|updated|revised|real|actual|true|secret|hidden|additional)\s+(?:system\s+)?(?:instructions?|prompt|directives?)\s*(?::|-{1,2}\s|for\s+(?:the\s+)?(?:ai|assistant|model|llm|agent)\b)",
            &["instruction", "prompt", "directive"],
        )
        .tags(&["injection", "instruction-override"]).severity(Medium).done(),
        B::new(
            "injection-role-override",
            "Role-play override (you are now..., from now on you..., jailbreak modes)",
            r"(?i)\b(?:you\s+are\s+now\s+(?:a|an|in|the|my|no\s+longer)\b[^.\n]{0,60}?\b(?:mode|assistant|ai|model|persona|character|bot|unrestricted|jailbroken|dan)\b|from\s+now\s+on,?\s+(?:you|act|respond|answer|reply)\b|act\s+as\s+(?:a|an)\s+(?:unrestricted|unfiltered|jailbroken|evil|uncensored)\b|pretend\s+(?:to\s+be|you\s+are)\s+(?:a|an)?\s*(?:unrestricted|unfiltered|different|evil|uncensored)\b|(?:developer|god|dan|jailbreak)\s+mode\s+(?:is\s+)?(?:enabled|activated|on)\b|do\s+anything\s+now\b)",
            &["you are now", "from now on", "act as", "pretend", "developer mode", "god mode", "dan mode", "jailbreak mode", "do anything now"],
        )
        .tags(&["injection", "role-override"]).severity(High).done(),
        B::new(
            "injection-chat-template",
            "Chat-template control tokens that fake a turn boundary",
            r"(?i)<\|(?:im_start|im_end|im_sep|system|user|assistant|endoftext|begin_of_text|start_header_id|end_header_id|eot_id)\|>|\[/?INST\]|<</?SYS>>|<(?:start|end)_of_turn>",
            &["<|", "[inst]", "[/inst]", "<<sys>>", "<</sys>>", "_of_turn>"],
        )
        .tags(&["injection", "fake-turn"]).severity(High).done(),
        B::new(
            "injection-fake-turn",
            "A line posing as a system / assistant / developer turn that addresses the model",
            r"(?i)(?:\A|\n)[ \t>#*]*(?:system|assistant|developer)[ \t]*(?:message|prompt|note|override)?[ \t]*:[ \t]*(?:you\s|ignore\b|disregard\b|forget\b|from\s+now\b|new\s+instructions?\b|your\s+(?:new\s+)?(?:task|instructions|goal|role)\b|always\b|never\b|do\s+not\b|don't\b|the\s+user\b)",
            &["system", "assistant", "developer"],
        )
        .tags(&["injection", "fake-turn"]).severity(High).done(),
        // Unkeyed: the regex's own literal prefilter (non-ASCII lead bytes) is faster.
        B::new(
            "injection-hidden-unicode",
            "Invisible text: Unicode tag characters, bidi overrides, runs of zero-width characters",
            r"(?-u:(?:\xF3\xA0[\x80-\x81][\x80-\xBF])+|\xE2\x80[\xAA-\xAE]|\xE2\x81[\xA6-\xA9]|(?:\xE2\x80[\x8B-\x8D]|\xE2\x81\xA0|\xEF\xBB\xBF){2,}|(?:\xE2\x80\x8B|\xE2\x81\xA0)[A-Za-z])",
            &[],
        )
        .tags(&["injection", "hidden-text"]).severity(Medium).done(),
        B::new(
            "injection-hidden-html",
            "HTML element styled to be invisible to a human reader",
            r#"(?i)<[a-z][^>]{0,200}style\s*=\s*["'][^"']{0,200}(?:display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0(?:px|em|pt)?\s*[;"']|opacity\s*:\s*0\s*[;"'])"#,
            &["display", "visibility", "font-size", "opacity"],
        )
        .tags(&["injection", "hidden-text"]).severity(Low).done(),
    ]
}

/// Payment card regex; [`super::prefilter::Guard::Card`] relies on its shape (13–19
/// digits, at most 37 bytes): change both together.
pub(crate) const CARD_REGEX: &str = r"\b[2-6](?:[ \-]?[0-9]){12,18}\b";
/// IBAN regex; [`super::prefilter::Guard::Iban`] relies on its shape (`AA00` lead, at most
/// 44 bytes): change both together.
pub(crate) const IBAN_REGEX: &str =
    r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b";

/// Personal data (tag `pii`): e-mail addresses, payment card numbers (Luhn + issuer),
/// IBANs (country length + mod-97).
pub fn builtin_pii() -> Vec<RuleSpec> {
    vec![
        B::new(
            "pii-email",
            "E-mail address",
            r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,24}\b",
            &["@"],
        )
        .tags(&["pii", "email"]).severity(Severity::Low).done(),
        B::new(
            "pii-payment-card",
            "Payment card number (issuer prefix and Luhn check digit)",
            CARD_REGEX,
            &[],
        )
        .tags(&["pii", "payment-card"]).severity(Severity::High).validator(Validator::Luhn).done(),
        B::new(
            "pii-iban",
            "International bank account number (country length and mod-97 check)",
            IBAN_REGEX,
            &[],
        )
        .tags(&["pii", "iban"]).severity(Severity::Medium).validator(Validator::Iban).done(),
    ]
}
