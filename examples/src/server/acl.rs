//! ACL-style users: `user NAME on >password ~* +@all` lines from the
//! configuration. Every user may run every command on every key; a rule
//! that would restrict that is refused when the server starts, so a
//! configuration never silently grants more than it says.

use std::collections::BTreeMap;

/// One user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Enabled (`on`) or not (`off`).
    pub enabled: bool,
    /// Accepted passwords; empty with `nopass` means any password.
    pub passwords: Vec<String>,
    /// `nopass`: any password is accepted.
    pub nopass: bool,
}

/// Parses the `users` lines; the `default` user gets `requirepass`.
pub fn parse(lines: &[String], requirepass: Option<&str>) -> Result<BTreeMap<String, User>, String> {
    let mut users = BTreeMap::new();
    users.insert(
        "default".to_string(),
        User {
            enabled: true,
            passwords: requirepass.map(str::to_string).into_iter().collect(),
            nopass: requirepass.is_none(),
        },
    );
    for line in lines {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("user"), Some(name)) => {
                let mut user = User {
                    enabled: false,
                    passwords: Vec::new(),
                    nopass: false,
                };
                for rule in words {
                    match rule {
                        "on" => user.enabled = true,
                        "off" => user.enabled = false,
                        "nopass" => user.nopass = true,
                        "~*" | "allkeys" | "+@all" | "allcommands" | "&*" | "allchannels" | "reset" => {}
                        r if r.starts_with('>') => user.passwords.push(r[1..].to_string()),
                        other => {
                            return Err(format!(
                                "ACL rule '{other}' for user {name} is not supported (ringkv users get every command and key)"
                            ))
                        }
                    }
                }
                users.insert(name.to_string(), user);
            }
            _ => return Err(format!("not an ACL user line: '{line}'")),
        }
    }
    Ok(users)
}

impl User {
    /// Does `password` log this user in?
    pub fn accepts(&self, password: &[u8]) -> bool {
        self.enabled && (self.nopass || self.passwords.iter().any(|p| p.as_bytes() == password))
    }

    /// The user's line as ACL LIST shows it.
    pub fn describe(&self, name: &str) -> String {
        let mut s = format!("user {name} {}", if self.enabled { "on" } else { "off" });
        if self.nopass {
            s.push_str(" nopass");
        }
        for _ in &self.passwords {
            s.push_str(" #<hidden>");
        }
        s.push_str(" ~* &* +@all");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_parse_and_restrictions_are_refused() {
        let users = parse(
            &["user app on >s3cret ~* +@all".into(), "user old off >x".into()],
            Some("root"),
        )
        .expect("valid");
        assert!(users["app"].accepts(b"s3cret") && !users["app"].accepts(b"nope"));
        assert!(!users["old"].accepts(b"x"), "an off user cannot log in");
        assert!(users["default"].accepts(b"root"));
        assert!(parse(&["user ro on >p ~cache:* +get".into()], None).is_err());
        assert!(parse(&["nonsense".into()], None).is_err());
    }
}
