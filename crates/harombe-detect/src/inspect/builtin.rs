//! The built-in secret rules, written from public token-format documentation (provider
//! docs and announcements of prefixed token formats). Order matters only for
//! de-duplication: a rule tagged `generic` yields to a specific rule on the same bytes.

use super::rule::{Allowlist, RegexTarget, RuleSpec, Severity};

/// Everything built in: secrets, then prompt-injection markers, then PII.
pub fn builtin_rules() -> Vec<RuleSpec> {
    let mut all = builtin_secrets();
    all.extend(super::inspectors::builtin_prompt_injection());
    all.extend(super::inspectors::builtin_pii());
    all
}

/// End of a token whose alphabet includes `-` and `_` (no look-ahead in linear regexes).
const TAIL: &str = r"(?:[^A-Za-z0-9_\-]|\z)";

pub(crate) struct B(RuleSpec);

impl B {
    pub(crate) fn new(id: &str, description: &str, regex: &str, keywords: &[&str]) -> Self {
        let mut spec = RuleSpec::new(id, description, regex);
        spec.keywords = keywords.iter().map(|k| (*k).to_owned()).collect();
        spec.severity = Severity::High;
        Self(spec)
    }
    pub(crate) fn tags(mut self, tags: &[&str]) -> Self {
        self.0.tags = tags.iter().map(|t| (*t).to_owned()).collect();
        self
    }
    pub(crate) fn severity(mut self, s: Severity) -> Self {
        self.0.severity = s;
        self
    }
    pub(crate) fn entropy(mut self, e: f64) -> Self {
        self.0.entropy = Some(e);
        self
    }
    pub(crate) fn window(mut self, w: usize) -> Self {
        self.0.window = w;
        self
    }
    pub(crate) fn exact_case(mut self) -> Self {
        self.0.case_sensitive_keywords = true;
        self
    }
    pub(crate) fn validator(mut self, v: super::rule::Validator) -> Self {
        self.0.validator = v;
        self
    }
    pub(crate) fn stopwords(mut self, words: &[&str]) -> Self {
        self.0.allowlists.push(Allowlist {
            stopwords: words.iter().map(|w| (*w).to_owned()).collect(),
            ..Allowlist::default()
        });
        self
    }
    pub(crate) fn allow_regex(mut self, target: RegexTarget, regex: &str) -> Self {
        self.0.allowlists.push(Allowlist {
            regexes: vec![regex.to_owned()],
            regex_target: target,
            ..Allowlist::default()
        });
        self
    }
    pub(crate) fn done(self) -> RuleSpec {
        self.0
    }
}

/// Placeholder words that mark documentation values, not secrets.
const PLACEHOLDERS: &[&str] = &[
    "example",
    "placeholder",
    "changeme",
    "xxxxxxxx",
    "redacted",
    "dummy",
    "your_",
    "<your",
];

/// The built-in secret rules (tag `secret`).
#[allow(clippy::too_many_lines)]
pub fn builtin_secrets() -> Vec<RuleSpec> {
    use Severity::{Critical, Medium};
    let t = |provider: &'static str| ["secret", provider];
    vec![
        B::new("aws-access-key-id", "AWS access key id", r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}\b", &["AKIA", "ASIA", "ABIA", "ACCA"])
            .exact_case().tags(&t("aws")).severity(Critical).stopwords(&["example"]).done(),
        B::new(
            "aws-secret-access-key",
            "AWS secret access key assigned to an AWS-named variable",
            r#"(?i)(?:aws[a-z0-9_.\-]{0,20}(?:secret|private)|secret_?access_?key)[a-z0-9_.\-]{0,20}["']?[ \t]{0,5}(?::=|=>|=|:)[ \t]{0,5}["']?([A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|\z)"#,
            &["aws", "accesskey", "access_key"],
        )
        .tags(&t("aws")).severity(Critical).entropy(3.0).stopwords(&["example"]).done(),
        B::new("gcp-service-account-key-id", "GCP service-account key file (private_key_id)", r#""private_key_id"\s*:\s*"([a-f0-9]{40})""#, &["private_key_id"])
            .tags(&t("gcp")).severity(Critical).done(),
        B::new("gcp-api-key", "Google / GCP API key", &format!(r"\b(AIza[0-9A-Za-z_\-]{{35}}){TAIL}"), &["AIza"])
            .exact_case().tags(&t("gcp")).done(),
        B::new(
            "azure-storage-connection-string",
            "Azure storage connection string with an account key",
            r"(?i)DefaultEndpointsProtocol=https?;AccountName=[a-z0-9]{3,24};AccountKey=([A-Za-z0-9+/]{86}==)",
            &["DefaultEndpointsProtocol"],
        )
        .tags(&t("azure")).severity(Critical).done(),
        B::new(
            "azure-storage-account-key",
            "Azure storage account key assigned to an Azure-named variable",
            r#"(?i)azure[a-z0-9_.\-]{0,20}(?:storage|account)[a-z0-9_.\-]{0,20}key["']?[ \t]{0,5}(?::=|=>|=|:)[ \t]{0,5}["']?([A-Za-z0-9+/]{86}==)"#,
            &["azure"],
        )
        .tags(&t("azure")).severity(Critical).done(),
        B::new(
            "azure-ad-client-secret",
            "Microsoft Entra ID (Azure AD) client secret",
            r"(?:\A|[^A-Za-z0-9_~.\-])([A-Za-z0-9_~.\-]{3}[0-9]Q~[A-Za-z0-9_~.\-]{31,34})(?:[^A-Za-z0-9_~.\-]|\z)",
            &["Q~"],
        )
        .exact_case().tags(&t("azure")).entropy(3.0).done(),
        B::new("github-pat", "GitHub classic personal access token", r"\bghp_[A-Za-z0-9]{36}\b", &["ghp_"]).tags(&t("github")).severity(Critical).done(),
        B::new("github-fine-grained-pat", "GitHub fine-grained personal access token", r"\bgithub_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}\b", &["github_pat_"])
            .tags(&t("github")).severity(Critical).done(),
        B::new("github-oauth-token", "GitHub OAuth access token", r"\bgho_[A-Za-z0-9]{36}\b", &["gho_"]).tags(&t("github")).done(),
        B::new("github-app-token", "GitHub App user-to-server or server-to-server token", r"\bgh[us]_[A-Za-z0-9]{36}\b", &["ghu_", "ghs_"])
            .tags(&t("github")).done(),
        B::new("github-refresh-token", "GitHub refresh token", r"\bghr_[A-Za-z0-9]{36}\b", &["ghr_"]).tags(&t("github")).done(),
        B::new("gitlab-pat", "GitLab personal access token", &format!(r"\b(glpat-[0-9A-Za-z_\-]{{20,}}(?:\.[0-9a-z]{{2}}\.[0-9a-z]{{9}})?){TAIL}"), &["glpat-"])
            .tags(&t("gitlab")).severity(Critical).done(),
        B::new("gitlab-runner-token", "GitLab runner authentication token", &format!(r"\b(glrt-[0-9A-Za-z_\-]{{20,}}){TAIL}"), &["glrt-"])
            .tags(&t("gitlab")).done(),
        B::new("gitlab-deploy-token", "GitLab deploy token", &format!(r"\b(gldt-[0-9A-Za-z_\-]{{20,}}){TAIL}"), &["gldt-"]).tags(&t("gitlab")).done(),
        B::new("gitlab-pipeline-trigger-token", "GitLab pipeline trigger token", r"\bglptt-[0-9a-f]{40}\b", &["glptt-"]).tags(&t("gitlab")).done(),
        B::new("slack-bot-token", "Slack bot token", r"\bxoxb-[0-9]{10,13}-[0-9]{10,13}-[A-Za-z0-9]{24}\b", &["xoxb-"]).tags(&t("slack")).done(),
        B::new("slack-user-token", "Slack user token", r"\bxox[pe]-[0-9]{10,13}-[0-9]{10,13}-[0-9]{10,13}-[A-Za-z0-9]{32}\b", &["xoxp-", "xoxe-"])
            .tags(&t("slack")).done(),
        B::new("slack-app-token", "Slack app-level token", r"\bxapp-[0-9]-[A-Z0-9]{9,12}-[0-9]{10,13}-[a-f0-9]{64}\b", &["xapp-"]).tags(&t("slack")).done(),
        B::new(
            "slack-webhook-url",
            "Slack incoming webhook URL",
            r"https://hooks\.slack\.com/services/(T[A-Z0-9]{8,12}/B[A-Z0-9]{8,12}/[A-Za-z0-9]{24})\b",
            &["hooks.slack.com"],
        )
        .tags(&t("slack")).done(),
        B::new("stripe-secret-key", "Stripe secret or restricted API key", r"\b[rs]k_(?:live|test)_[0-9A-Za-z]{24,99}\b", &["sk_live_", "sk_test_", "rk_live_", "rk_test_"])
            .tags(&t("stripe")).severity(Critical).done(),
        B::new("stripe-webhook-secret", "Stripe webhook signing secret", r"\bwhsec_[A-Za-z0-9]{32,64}\b", &["whsec_"]).tags(&t("stripe")).done(),
        B::new("twilio-api-key", "Twilio API key SID", r"\bSK[0-9a-f]{32}\b", &["SK"]).exact_case().tags(&t("twilio")).entropy(3.0).done(),
        B::new("sendgrid-api-key", "SendGrid API key", &format!(r"\b(SG\.[A-Za-z0-9_\-]{{22}}\.[A-Za-z0-9_\-]{{43}}){TAIL}"), &["SG."])
            .exact_case().tags(&t("sendgrid")).done(),
        B::new(
            "openai-api-key",
            "OpenAI API key (project, service-account, admin or legacy)",
            &format!(r"\b(sk-(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{{40,250}}|sk-[A-Za-z0-9]{{20}}T3BlbkFJ[A-Za-z0-9]{{20}}){TAIL}"),
            &["sk-proj-", "sk-svcacct-", "sk-admin-", "T3BlbkFJ"],
        )
        .tags(&t("openai")).severity(Critical).done(),
        B::new("anthropic-api-key", "Anthropic API or admin key", &format!(r"\b(sk-ant-(?:api03|admin01)-[A-Za-z0-9_\-]{{93}}AA){TAIL}"), &["sk-ant-"])
            .tags(&t("anthropic")).severity(Critical).done(),
        B::new("huggingface-token", "Hugging Face access token", r"\b(?:hf_|api_org_)[A-Za-z]{34}\b", &["hf_", "api_org_"]).tags(&t("huggingface")).done(),
        B::new("npm-access-token", "npm access token", r"\bnpm_[A-Za-z0-9]{36}\b", &["npm_"]).tags(&t("npm")).done(),
        B::new("pypi-upload-token", "PyPI upload token", &format!(r"\b(pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{{50,}}){TAIL}"), &["pypi-AgEIcHlwaS5vcmc"])
            .tags(&t("pypi")).done(),
        B::new("dockerhub-token", "Docker Hub personal or organisation access token", &format!(r"\b(dckr_(?:pat|oat)_[A-Za-z0-9_\-]{{27,32}}){TAIL}"), &["dckr_pat_", "dckr_oat_"])
            .tags(&t("docker")).done(),
        B::new("jwt", "JSON Web Token", r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*", &["eyJ"])
            .exact_case().tags(&t("jwt")).severity(Medium).done(),
        B::new(
            "private-key",
            "PEM, OpenSSH or PGP private key block",
            r"(?s)-----BEGIN[ A-Z0-9_\-]{0,40}PRIVATE KEY(?: BLOCK)?-----.+?-----END[ A-Z0-9_\-]{0,40}PRIVATE KEY(?: BLOCK)?-----",
            &["PRIVATE KEY-----", "PRIVATE KEY BLOCK-----"],
        )
        .exact_case().window(64 << 10).tags(&t("private-key")).severity(Critical).done(),
        B::new(
            "database-url-password",
            "Database or broker URL with an inline password",
            r#"(?i)\b(?:postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|rediss?|amqps?|mssql|sqlserver|clickhouse|cockroachdb)://[^\s:@/"'<>]{1,128}:([^\s@/"'<>]{1,256})@[A-Za-z0-9.\-_\[\]:]{1,253}"#,
            &["postgres", "mysql", "mariadb", "mongodb", "redis", "amqp", "mssql", "sqlserver", "clickhouse", "cockroachdb"],
        )
        .tags(&t("database"))
        .allow_regex(RegexTarget::Secret, r"(?i)^(?:\$\{[^}]*\}|\$[A-Z_]+|\{\{[^}]*\}\}|%\([a-z_]+\)s|\*+|x+|pass(?:word)?|secret|changeme)$")
        .done(),
        B::new(
            "generic-secret-assignment",
            "High-entropy value assigned to a password / secret / token / api_key name",
            super::assign::PATTERN,
            &[
                "password", "passwd", "pwd", "secret", "token", "api_key", "apikey", "-key", "access_key", "accesskey",
                "auth_key", "authkey", "private_key", "privatekey",
            ],
        )
        .tags(&["secret", "generic"]).severity(Medium).entropy(3.5)
        .validator(super::rule::Validator::LettersAndDigits)
        .stopwords(PLACEHOLDERS)
        .done(),
    ]
}
