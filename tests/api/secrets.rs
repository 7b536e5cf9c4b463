//! Secrets in the environment, through the built binary with an environment of the test's
//! making (never the shell's): no help page prints them, each can come from `<VAR>_FILE`
//! instead, and giving both is refused without echoing either.

use std::process::{Command, Output};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::{helpers::fresh_database, tls::TempDir};

fn customer_api(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_customer-api"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// Every variable that can hold a secret or a credential, with a recognisable value.
const SECRETS: &[(&str, &str)] = &[
    (
        "DATABASE_URL",
        "postgres://app:db-password-1@db.internal:5432/customers",
    ),
    (
        "DATABASE_SESSION_URL",
        "postgres://app:db-password-2@db-direct.internal:5432/customers",
    ),
    ("JWT_HS256_SECRET", "jwt-secret-value-0123456789abcdefghij"),
    ("PAGE_TOKEN_KEY", "page-token-key-value-0123456789"),
    ("BUSINESS_REGISTRY_TOKEN", "registry-token-value-42"),
    (
        "BUSINESS_REGISTRY_URL",
        "https://registry.example/v1/{business_id}?apikey=registry-url-key-7",
    ),
    (
        "NATS_URL",
        "nats://relay:nats-password-3@nats.internal:4222",
    ),
    (
        "JWKS_URL",
        "https://idp.example/jwks?sig=jwks-url-signature-9",
    ),
];

/// The parts of [`SECRETS`] that must never be printed.
const SECRET_PARTS: &[&str] = &[
    "db-password-1",
    "db-password-2",
    "jwt-secret-value",
    "page-token-key-value",
    "registry-token-value",
    "registry-url-key",
    "nats-password",
    "jwks-url-signature",
];

#[test]
fn no_help_page_prints_a_value_from_the_environment() {
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["migrate", "--help"],
        &["token", "--help"],
        &["api-key", "--help"],
        &["api-key", "create", "--help"],
        &["api-key", "list", "--help"],
        &["api-key", "revoke", "--help"],
        &["openapi", "--help"],
        &["help", "serve"],
    ] {
        let out = customer_api(args, SECRETS);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stderr}");
        for part in SECRET_PARTS {
            assert!(!stdout.contains(part), "{args:?} printed {part}:\n{stdout}");
            assert!(!stderr.contains(part), "{args:?} printed {part}:\n{stderr}");
        }
    }
    // The variables are still documented, just not their values.
    let serve = customer_api(&["serve", "--help"], SECRETS);
    let text = String::from_utf8_lossy(&serve.stdout);
    for (name, _) in SECRETS {
        assert!(
            text.contains(&format!("[env: {name}]")),
            "{name} in:\n{text}"
        );
    }
}

#[test]
fn a_secret_is_read_from_its_file_without_the_trailing_newline() {
    let dir = TempDir::new();
    let secret = "file-secret-0123456789abcdefghijklmnop";
    let file = dir.write("jwt", &format!("{secret}\n"));
    let out = customer_api(
        &["token", "--sub", "from-file", "--scopes", "customers.read"],
        &[("JWT_HS256_SECRET_FILE", file.to_str().unwrap())],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<serde_json::Value>(
        &token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .expect("signed with the file's secret, newline excluded");
    assert_eq!(claims.claims["sub"], "from-file");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_database_url_is_read_from_database_url_file() {
    let database = fresh_database().await;
    let (url, _) = database.parts();
    let dir = TempDir::new();
    let file = dir.write("database-url", &format!("{url}\r\n"));
    let out = customer_api(
        &["migrate"],
        &[("DATABASE_URL_FILE", file.to_str().unwrap())],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("migrations up to date"));
}

#[test]
fn a_variable_and_its_file_together_are_refused_without_echoing_either() {
    let dir = TempDir::new();
    let file = dir.write("jwt", "file-secret-0123456789abcdefghijklmnop\n");
    let out = customer_api(
        &["token"],
        &[
            ("JWT_HS256_SECRET", "env-secret-0123456789abcdefghijklmnop"),
            ("JWT_HS256_SECRET_FILE", file.to_str().unwrap()),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "JWT_HS256_SECRET and JWT_HS256_SECRET_FILE are both set: set only one of them"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("-secret-0123"), "{stderr}");

    let missing = customer_api(
        &["migrate"],
        &[("DATABASE_URL_FILE", "/no/such/database-url")],
    );
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("DATABASE_URL_FILE: cannot read /no/such/database-url: "),
        "{stderr}"
    );
}
