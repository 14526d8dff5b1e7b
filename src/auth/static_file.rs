//! Tokens listed in a file, one `token userId` pair per line (blank lines and `#` comments
//! ignored). Reloaded on SIGHUP: a token removed from the file is refused from then on, and
//! connections already bound stay open.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

use super::{AuthError, AuthFuture, Authenticator, Identity, RejectReason};
use crate::config::ConfigError;

#[derive(Debug)]
pub struct StaticAuthenticator {
    path: PathBuf,
    /// Swapped whole on reload; readers clone the `Arc` and never wait on a writer for long.
    tokens: RwLock<Arc<HashMap<String, String>>>,
}

/// A token listed twice is refused: which user it would name is a guess, and a wrong guess
/// delivers one user's alerts to another.
fn parse(text: &str) -> Result<HashMap<String, String>, String> {
    let mut tokens = HashMap::new();
    let mut first_line = HashMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next(), parts.next()) {
            (Some(token), Some(user), None) => {
                if let Some(first) = first_line.insert(token, number + 1) {
                    return Err(format!(
                        "line {}: token repeated (first on line {first})",
                        number + 1
                    ));
                }
                tokens.insert(token.to_owned(), user.to_owned());
            }
            _ => return Err(format!("line {}: expected `token userId`", number + 1)),
        }
    }
    Ok(tokens)
}

impl StaticAuthenticator {
    pub fn load(path: PathBuf) -> Result<Self, ConfigError> {
        let tokens = Self::read(&path).map_err(|reason| ConfigError::File {
            path: path.display().to_string(),
            reason,
        })?;
        Ok(Self {
            path,
            tokens: RwLock::new(Arc::new(tokens)),
        })
    }

    fn read(path: &PathBuf) -> Result<HashMap<String, String>, String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        parse(&text)
    }

    fn current(&self) -> Arc<HashMap<String, String>> {
        self.tokens
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Authenticator for StaticAuthenticator {
    fn authenticate<'a>(&'a self, token: &'a str) -> AuthFuture<'a> {
        let result = self
            .current()
            .get(token)
            .map(Identity::forever)
            .ok_or(AuthError::Rejected(RejectReason::UnknownToken));
        Box::pin(std::future::ready(result))
    }

    fn reload(&self) -> Result<(), String> {
        let tokens = Self::read(&self.path)?;
        *self.tokens.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(tokens);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs_and_refuses_bad_lines() {
        let tokens = parse("# comment\n\ntok-1 alice\n  tok-2\tbob  \n").unwrap();
        assert_eq!(tokens.get("tok-1").map(String::as_str), Some("alice"));
        assert_eq!(tokens.get("tok-2").map(String::as_str), Some("bob"));
        assert!(parse("just-a-token\n").is_err());
        assert!(parse("a b c\n").is_err());
        assert_eq!(
            parse("tok-dup alice\n# later\ntok-dup bob\n"),
            Err("line 3: token repeated (first on line 1)".to_owned())
        );
    }
}
