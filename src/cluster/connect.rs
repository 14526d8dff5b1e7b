//! How a node reaches NATS: the server addresses, the credentials it presents and TLS.
//!
//! Credentials come from `--nats-user`/`--nats-password`, `--nats-token`, or the URLs
//! themselves (`nats://user:password@host`, `nats://token@host`). async-nats 0.51 sends only
//! the credentials set on its options, never those of a URL, and prints every address it
//! tries at debug level; so a URL's credentials are moved into the options and the URL is
//! handed over without them.

use std::fmt;
use std::path::Path;

use async_nats::{ConnectOptions, ServerAddr};
use percent_encoding::percent_decode_str;

use super::ClusterError;
use crate::config::Config;

/// What a node presents to NATS. Its `Debug` hides the secrets.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    UserPassword { user: String, password: String },
    Token(String),
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
    let from_flags = match (&config.nats_user, &config.nats_password, &config.nats_token) {
        (Some(user), Some(password), None) => Some(Credentials::UserPassword {
            user: user.clone(),
            password: password.clone(),
        }),
        (None, None, Some(token)) => Some(Credentials::Token(token.clone())),
        // clap enforces the pairs and the exclusion; a configuration built in code may not.
        (None, None, None) => None,
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
const INCOMPLETE_FLAGS: &str = "give --nats-user with --nats-password, or --nats-token alone";
const TWICE: &str =
    "NATS credentials are given both in a URL and by --nats-user/--nats-token; give them once";

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
/// the certificate files can be read (a wrong path stops the node at start, with status 64,
/// instead of failing every reconnection attempt for ever).
pub fn check(config: &Config) -> Result<(), ClusterError> {
    super::bucket::check_prefix(&config.nats_subject_prefix).map_err(ClusterError::Setting)?;
    servers(config)?;
    for (flag, path) in [
        ("--nats-tls-ca", &config.nats_tls_ca),
        ("--nats-tls-cert", &config.nats_tls_cert),
        ("--nats-tls-key", &config.nats_tls_key),
    ] {
        if let Some(path) = path {
            readable(path, flag)?;
        }
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
        Ok(_) => Err(ClusterError::TlsFile {
            flag,
            path: path.display().to_string(),
            reason: "empty file".to_owned(),
        }),
        Err(error) => Err(ClusterError::TlsFile {
            flag,
            path: path.display().to_string(),
            reason: error.to_string(),
        }),
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
