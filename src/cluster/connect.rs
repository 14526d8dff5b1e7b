//! How a node reaches NATS: the server addresses, the credentials it presents and TLS.
//!
//! Credentials come from `--nats-user`/`--nats-password`, `--nats-token`, a credentials
//! file (`--nats-creds`), an NKey seed file (`--nats-nkey`), or the URLs themselves
//! (`nats://user:password@host`, `nats://token@host`). The files are read and checked when
//! the configuration is validated, so a wrong path or a damaged file stops the node at start
//! (status 64) instead of failing every connection attempt for ever. async-nats 0.51 sends only
//! the credentials set on its options, never those of a URL, and prints every address it
//! tries at debug level; so a URL's credentials are moved into the options and the URL is
//! handed over without them.

use std::fmt;
use std::path::{Path, PathBuf};

use async_nats::{ConnectOptions, ServerAddr};
use percent_encoding::percent_decode_str;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::ClusterError;
use crate::config::Config;

/// What a node presents to NATS. Its `Debug` hides the secrets.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    UserPassword {
        user: String,
        password: String,
    },
    Token(String),
    /// A `.creds` file's path and text: a user JWT and the seed that signs the server's nonce.
    CredsFile {
        path: PathBuf,
        text: String,
    },
    /// A user NKey seed, which signs the server's nonce.
    NKeySeed(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UserPassword { user, .. } => f
                .debug_struct("UserPassword")
                .field("user", user)
                .field("password", &"***")
                .finish(),
            Self::Token(_) => f.debug_tuple("Token").field(&"***").finish(),
            Self::CredsFile { path, .. } => f
                .debug_struct("CredsFile")
                .field("path", path)
                .field("text", &"***")
                .finish(),
            Self::NKeySeed(_) => f.debug_tuple("NKeySeed").field(&"***").finish(),
        }
    }
}

/// The servers to connect to, credentials removed, and the credentials to present.
#[derive(Debug)]
pub struct Servers {
    pub addresses: Vec<ServerAddr>,
    pub credentials: Option<Credentials>,
}

/// Parses `--nats-url`, moves the credentials out of the URLs, and checks them against the
/// credential flags: one set of credentials, given once, for every server.
pub fn servers(config: &Config) -> Result<Servers, ClusterError> {
    let mut addresses = Vec::with_capacity(config.nats_url.len());
    let mut from_urls: Option<Credentials> = None;
    for url in &config.nats_url {
        let invalid = |reason: String| ClusterError::Url {
            url: super::redact(url),
            reason,
        };
        let address = url
            .trim()
            .parse::<ServerAddr>()
            .map_err(|error| invalid(error.to_string()))?;
        let (address, credentials) = take_credentials(address).map_err(invalid)?;
        match (&from_urls, credentials) {
            (_, None) => {}
            (None, Some(credentials)) => from_urls = Some(credentials),
            (Some(known), Some(credentials)) if *known == credentials => {}
            (Some(_), Some(_)) => return Err(ClusterError::Setting(DIFFERENT_IN_URLS)),
        }
        addresses.push(address);
    }
    let from_flags = match (
        &config.nats_user,
        &config.nats_password,
        &config.nats_token,
        &config.nats_creds,
        &config.nats_nkey,
    ) {
        (Some(user), Some(password), None, None, None) => Some(Credentials::UserPassword {
            user: user.clone(),
            password: password.clone(),
        }),
        (None, None, Some(token), None, None) => Some(Credentials::Token(token.clone())),
        (None, None, None, Some(path), None) => Some(creds_file(path)?),
        (None, None, None, None, Some(path)) => Some(nkey_seed(path)?),
        // clap enforces the pairs and the exclusions; a configuration built in code may not.
        (None, None, None, None, None) => None,
        _ => return Err(ClusterError::Setting(INCOMPLETE_FLAGS)),
    };
    let credentials = match (from_urls, from_flags) {
        (Some(_), Some(_)) => return Err(ClusterError::Setting(TWICE)),
        (urls, flags) => urls.or(flags),
    };
    Ok(Servers {
        addresses,
        credentials,
    })
}

const DIFFERENT_IN_URLS: &str =
    "the NATS URLs carry different credentials; a node presents one set to every server";
const INCOMPLETE_FLAGS: &str = "give --nats-user with --nats-password, or one of --nats-token, \
     --nats-creds and --nats-nkey alone";
const TWICE: &str =
    "NATS credentials are given both in a URL and by a --nats-… flag; give them once";

const NOT_A_USER_SEED: &str = "an NKey seed of another kind than a user's (SU…)";

/// Reads a `.creds` file and checks that async-nats finds a JWT and a seed in it, and that
/// the seed is a user's (async-nats takes any kind, which every server then refuses).
fn creds_file(path: &Path) -> Result<Credentials, ClusterError> {
    let flag = "--nats-creds";
    let text = read_text(path, flag)?;
    ConnectOptions::new()
        .credentials(&text)
        .map_err(|error| file_error(flag, path, error.to_string()))?;
    let user_seed = text
        .lines()
        .filter_map(|line| nkeys::KeyPair::from_seed(line.trim()).ok())
        .any(|key| key.key_pair_type() == nkeys::KeyPairType::User);
    if !user_seed {
        return Err(file_error(flag, path, NOT_A_USER_SEED.to_owned()));
    }
    Ok(Credentials::CredsFile {
        path: path.to_owned(),
        text,
    })
}

/// Reads an NKey seed file and checks that it holds one user seed.
fn nkey_seed(path: &Path) -> Result<Credentials, ClusterError> {
    let flag = "--nats-nkey";
    let text = read_text(path, flag)?;
    let seed = text.trim();
    let key = nkeys::KeyPair::from_seed(seed).map_err(|_| {
        file_error(
            flag,
            path,
            "not an NKey seed (one line starting with SU)".to_owned(),
        )
    })?;
    if key.key_pair_type() != nkeys::KeyPairType::User {
        return Err(file_error(flag, path, NOT_A_USER_SEED.to_owned()));
    }
    Ok(Credentials::NKeySeed(seed.to_owned()))
}

fn read_text(path: &Path, flag: &'static str) -> Result<String, ClusterError> {
    std::fs::read_to_string(path).map_err(|error| file_error(flag, path, error.to_string()))
}

fn file_error(flag: &'static str, path: &Path, reason: String) -> ClusterError {
    ClusterError::File {
        flag,
        path: path.display().to_string(),
        reason,
    }
}

/// Splits `user:password@` (or `token@`) off an address, percent-decoded.
fn take_credentials(address: ServerAddr) -> Result<(ServerAddr, Option<Credentials>), String> {
    if !address.has_user_pass() {
        return Ok((address, None));
    }
    let decode = |text: &str| {
        percent_decode_str(text)
            .decode_utf8()
            .map(|text| text.into_owned())
            .map_err(|_| "its credentials are not UTF-8 once percent-decoded".to_owned())
    };
    let user = decode(address.username().unwrap_or_default())?;
    let credentials = match address.password() {
        Some(password) => Credentials::UserPassword {
            user,
            password: decode(password)?,
        },
        None => Credentials::Token(user),
    };
    let mut url = address.into_inner();
    if url.set_username("").is_err() || url.set_password(None).is_err() {
        return Err("its credentials cannot be removed from it".to_owned());
    }
    let address = ServerAddr::from_url(url).map_err(|error| error.to_string())?;
    Ok((address, Some(credentials)))
}

/// What `Config::validate` checks of cluster mode: the URLs, the credential rules, and that
/// the certificate files can be read and hold what their flag names (a wrong path or a
/// damaged file stops the node at start, with status 64, instead of failing every
/// reconnection attempt for ever as "NATS unreachable"). Whether a key matches its
/// certificate, or the server accepts the certificate, only the TLS handshake tells.
pub fn check(config: &Config) -> Result<(), ClusterError> {
    super::bucket::check_prefix(&config.nats_subject_prefix).map_err(ClusterError::Setting)?;
    servers(config)?;
    if let Some(path) = &config.nats_tls_key {
        readable(path, "--nats-tls-key")?;
        PrivateKeyDer::from_pem_file(path).map_err(|error| {
            file_error(
                "--nats-tls-key",
                path,
                format!("no PEM private key: {error}"),
            )
        })?;
    }
    for (flag, path) in [
        ("--nats-tls-ca", &config.nats_tls_ca),
        ("--nats-tls-cert", &config.nats_tls_cert),
    ] {
        if let Some(path) = path {
            readable(path, flag)?;
            holds_certificates(path, flag)?;
        }
    }
    Ok(())
}

/// At least one PEM certificate, and nothing in the file that fails to parse as one.
fn holds_certificates(path: &Path, flag: &'static str) -> Result<(), ClusterError> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .map_err(|error| file_error(flag, path, format!("unreadable PEM: {error}")))?;
    if certificates.is_empty() {
        return Err(file_error(
            flag,
            path,
            "no PEM certificate in it".to_owned(),
        ));
    }
    Ok(())
}

/// Adds the credentials and the TLS settings to `options`.
pub fn secure(
    mut options: ConnectOptions,
    credentials: Option<Credentials>,
    config: &Config,
) -> Result<ConnectOptions, ClusterError> {
    options = match credentials {
        Some(Credentials::UserPassword { user, password }) => {
            options.user_and_password(user, password)
        }
        Some(Credentials::Token(token)) => options.token(token),
        Some(Credentials::CredsFile { path, text }) => options
            .credentials(&text)
            .map_err(|error| file_error("--nats-creds", &path, error.to_string()))?,
        Some(Credentials::NKeySeed(seed)) => options.nkey(seed),
        None => options,
    };
    if let Some(ca) = &config.nats_tls_ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&config.nats_tls_cert, &config.nats_tls_key) {
        options = options
            .add_client_certificate(cert.clone(), key.clone())
            .require_tls(true);
    }
    Ok(options)
}

fn readable(path: &Path, flag: &'static str) -> Result<(), ClusterError> {
    match std::fs::read(path) {
        Ok(bytes) if !bytes.is_empty() => Ok(()),
        Ok(_) => Err(file_error(flag, path, "empty file".to_owned())),
        Err(error) => Err(file_error(flag, path, error.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn config(args: &[&str]) -> Config {
        Config::parse_from(std::iter::once("pushgate").chain(args.iter().copied()))
    }

    fn urls(servers: &Servers) -> Vec<&str> {
        servers.addresses.iter().map(|a| a.as_url_str()).collect()
    }

    #[test]
    fn credentials_move_from_the_urls_to_the_options() {
        let servers = servers(&config(&[
            "--nats-url",
            "nats://alice:p%40ss%3Aword@10.0.0.5:4222,10.0.0.6:4222,nats://alice:p%40ss%3Aword@10.0.0.7",
        ]))
        .unwrap();
        assert_eq!(
            urls(&servers),
            [
                "nats://10.0.0.5:4222",
                "nats://10.0.0.6:4222",
                "nats://10.0.0.7"
            ]
        );
        assert_eq!(
            servers.credentials,
            Some(Credentials::UserPassword {
                user: "alice".into(),
                password: "p@ss:word".into()
            })
        );
        let servers = servers_of(&["--nats-url", "tls://s3cr3t@nats.example:4222"]);
        assert_eq!(urls(&servers), ["tls://nats.example:4222"]);
        assert_eq!(
            servers.credentials,
            Some(Credentials::Token("s3cr3t".into()))
        );
        assert_eq!(
            format!("{:?}", servers.credentials),
            r#"Some(Token("***"))"#
        );
    }

    fn servers_of(args: &[&str]) -> Servers {
        servers(&config(args)).unwrap()
    }

    #[test]
    fn credentials_come_from_the_flags_when_the_urls_have_none() {
        let from_user = servers_of(&[
            "--nats-url",
            "nats://10.0.0.5",
            "--nats-user",
            "bob",
            "--nats-password",
            "pw",
        ]);
        assert_eq!(
            from_user.credentials,
            Some(Credentials::UserPassword {
                user: "bob".into(),
                password: "pw".into()
            })
        );
        let from_token = servers_of(&["--nats-url", "nats://10.0.0.5", "--nats-token", "t"]);
        assert_eq!(from_token.credentials, Some(Credentials::Token("t".into())));
        assert_eq!(
            servers_of(&["--nats-url", "nats://10.0.0.5"]).credentials,
            None
        );
    }

    #[test]
    fn credentials_given_twice_or_differently_are_refused() {
        for args in [
            &["--nats-url", "nats://a:b@10.0.0.5,nats://a:c@10.0.0.6"][..],
            &["--nats-url", "nats://a:b@10.0.0.5", "--nats-token", "t"][..],
        ] {
            let error = servers(&config(args)).unwrap_err();
            assert!(matches!(error, ClusterError::Setting(_)), "{args:?}");
            // Never the secret itself in the message.
            assert!(!error.to_string().contains(":b@"), "{error}");
        }
        // The flags' pairs are clap's to enforce.
        assert!(Config::try_parse_from(["pushgate", "--nats-user", "a"]).is_err());
        assert!(Config::try_parse_from([
            "pushgate",
            "--nats-token",
            "t",
            "--nats-user",
            "a",
            "--nats-password",
            "p"
        ])
        .is_err());
        assert!(Config::try_parse_from(["pushgate", "--nats-tls-cert", "c.pem"]).is_err());
        let user = ["--nats-user", "a", "--nats-password", "p"];
        assert!(Config::try_parse_from([&["pushgate"][..], &user].concat()).is_ok());
        for file_flag in ["--nats-creds", "--nats-nkey"] {
            let alone = ["pushgate", file_flag, "f"];
            assert!(Config::try_parse_from(alone).is_ok(), "{file_flag}");
            for other in [&["--nats-token", "t"][..], &user] {
                let args = [&alone[..], other].concat();
                assert!(Config::try_parse_from(&args).is_err(), "{args:?}");
            }
        }
        assert!(
            Config::try_parse_from(["pushgate", "--nats-creds", "f", "--nats-nkey", "g"]).is_err()
        );
    }

    /// A file under the temp dir holding `text`, removed on drop.
    struct File(std::path::PathBuf);

    impl File {
        fn with(name: &str, text: &str) -> Self {
            let path =
                std::env::temp_dir().join(format!("pushgate-unit-{}-{name}", std::process::id()));
            std::fs::write(&path, text).unwrap();
            Self(path)
        }

        fn path(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for File {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn validation_error(args: &[&str]) -> String {
        config(args).validate().unwrap_err().to_string()
    }

    #[test]
    fn a_damaged_or_missing_creds_file_stops_the_node_at_start() {
        let damaged = File::with(
            "damaged.creds",
            "-----BEGIN NATS USER JWT-----\nnot a jwt\n",
        );
        let error = validation_error(&["--nats-url", "10.0.0.5", "--nats-creds", damaged.path()]);
        assert!(
            error.starts_with(&format!("cluster mode: --nats-creds {}: ", damaged.path())),
            "{error}"
        );
        let account_creds = File::with(
            "account.creds",
            &format!(
                "-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QifQ.e30.sig\n------END NATS USER JWT------\n\n\
                 -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
                nkeys::KeyPair::new_account().seed().unwrap()
            ),
        );
        let error = validation_error(&[
            "--nats-url",
            "10.0.0.5",
            "--nats-creds",
            account_creds.path(),
        ]);
        assert!(error.contains("another kind than a user"), "{error}");
        let error = validation_error(&[
            "--nats-url",
            "10.0.0.5",
            "--nats-creds",
            "/nonexistent/x.creds",
        ]);
        assert!(
            error.starts_with("cluster mode: --nats-creds /nonexistent/x.creds: "),
            "{error}"
        );
    }

    #[test]
    fn an_nkey_file_must_hold_a_user_seed() {
        let user = nkeys::KeyPair::new_user();
        let good = File::with("user.nk", &format!("{}\n", user.seed().unwrap()));
        let servers = servers(&config(&[
            "--nats-url",
            "10.0.0.5",
            "--nats-nkey",
            good.path(),
        ]))
        .unwrap();
        assert_eq!(
            servers.credentials,
            Some(Credentials::NKeySeed(user.seed().unwrap()))
        );
        // The seed never shows in a debug print.
        assert!(!format!("{servers:?}").contains(&user.seed().unwrap()));

        // Credentials in a URL as well: refused like any other pair of sources.
        let error = super::servers(&config(&[
            "--nats-url",
            "nats://t0ken@10.0.0.5",
            "--nats-nkey",
            good.path(),
        ]))
        .unwrap_err();
        assert!(matches!(error, ClusterError::Setting(TWICE)), "{error}");

        let account = File::with("account.nk", &nkeys::KeyPair::new_account().seed().unwrap());
        let error = validation_error(&["--nats-url", "10.0.0.5", "--nats-nkey", account.path()]);
        assert!(error.contains("another kind than a user"), "{error}");
        let public = File::with("public.nk", &user.public_key());
        let error = validation_error(&["--nats-url", "10.0.0.5", "--nats-nkey", public.path()]);
        assert!(error.contains("not an NKey seed"), "{error}");
        assert!(!error.contains(&user.public_key()), "{error}");
    }

    /// A damaged TLS file used to start the node, which then failed every handshake for ever,
    /// reported as "NATS unreachable". (Valid files: `tests/cluster.rs`, mutual TLS.)
    #[test]
    fn tls_files_that_do_not_hold_what_their_flag_names_stop_the_node_at_start() {
        let garbage = File::with("garbage.pem", "garbage\n");
        let key_only = File::with(
            "key-only.pem",
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIB1l5kVtgBbzkhVDHvKCN6yBoPlRoO4w0QyhTwUr+4G4\n-----END PRIVATE KEY-----\n",
        );
        for (flag, path, expected) in [
            ("--nats-tls-ca", garbage.path(), "no PEM certificate"),
            ("--nats-tls-ca", key_only.path(), "no PEM certificate"),
            ("--nats-tls-key", garbage.path(), "no PEM private key"),
        ] {
            let mut args = vec!["--nats-url", "tls://10.0.0.5", flag, path];
            if flag == "--nats-tls-key" {
                args.extend(["--nats-tls-cert", key_only.path()]);
            }
            let error = validation_error(&args);
            assert!(
                error.contains(&format!("{flag} {path}")) && error.contains(expected),
                "{flag}: {error}"
            );
        }
    }

    #[test]
    fn a_missing_certificate_file_is_a_configuration_error() {
        let config = config(&[
            "--nats-url",
            "tls://10.0.0.5",
            "--nats-tls-ca",
            "/nonexistent/ca.pem",
        ]);
        let error = config.validate().unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("cluster mode: --nats-tls-ca /nonexistent/ca.pem: "),
            "{error}"
        );
    }
}
