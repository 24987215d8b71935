//! Per-namespace authorization: allow rules, everything else denied.
//!
//! A rule allows when one of its principals is one of the caller's names (or is `*`), one of
//! its namespaces is the requested one (or is `*`), and one of its roles is the requested role.
//! Rules only ever add permissions, so their order does not matter.

use std::collections::HashSet;

use super::settings::AuthzConfig;
use super::{Principal, Role};

/// One compiled rule.
#[derive(Debug)]
struct CompiledRule {
    any_principal: bool,
    principals: HashSet<String>,
    any_namespace: bool,
    namespaces: HashSet<String>,
    read: bool,
    write: bool,
}

/// Decides whether a principal may read (decode) or write (encode) in a namespace.
#[derive(Debug)]
pub struct Authorizer {
    rules: Vec<CompiledRule>,
}

impl Authorizer {
    /// The stable code of a refusal (403 / `PERMISSION_DENIED`), for JSON error bodies and the
    /// audit log, next to [`super::AuthError::code`].
    pub const DENIED_CODE: &'static str = "forbidden";

    /// Compiles `[authz]`.
    pub fn new(config: &AuthzConfig) -> Self {
        let rules = config
            .rules
            .iter()
            .map(|rule| CompiledRule {
                any_principal: rule.principals.iter().any(|p| p == "*"),
                principals: rule.principals.iter().cloned().collect(),
                any_namespace: rule.namespaces.iter().any(|n| n == "*"),
                namespaces: rule.namespaces.iter().cloned().collect(),
                read: rule.roles.contains(&Role::Read),
                write: rule.roles.contains(&Role::Write),
            })
            .collect();
        Self { rules }
    }

    /// Does a rule let `principal` act as `role` in `namespace`? Anonymous principals (open
    /// listeners) are the transport's business: it skips authorization for them, and no rule
    /// matches them here (`*` means "anyone authenticated").
    pub fn allows(&self, principal: &Principal, namespace: &str, role: Role) -> bool {
        if principal.is_anonymous() {
            return false;
        }
        self.rules.iter().any(|rule| {
            let role_ok = match role {
                Role::Read => rule.read,
                Role::Write => rule.write,
            };
            role_ok
                && (rule.any_namespace || rule.namespaces.contains(namespace))
                && (rule.any_principal
                    || principal
                        .names
                        .iter()
                        .any(|name| rule.principals.contains(name)))
        })
    }

    /// The transports' decision: on an open listener (`authenticator` has no methods) every
    /// caller may do everything; otherwise a rule must allow it ([`Authorizer::allows`]).
    pub fn permits(
        &self,
        authenticator: &super::Authenticator,
        principal: &Principal,
        namespace: &str,
        role: Role,
    ) -> bool {
        authenticator.is_open() || self.allows(principal, namespace, role)
    }

    /// How many rules there are.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Method;
    use crate::auth::settings::Rule;

    fn principal(names: &[&str]) -> Principal {
        Principal {
            id: names[0].to_owned(),
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            method: Some(Method::Jwt),
        }
    }

    fn rule(principals: &[&str], namespaces: &[&str], roles: &[Role]) -> Rule {
        Rule {
            principals: principals.iter().map(|p| (*p).to_owned()).collect(),
            namespaces: namespaces.iter().map(|n| (*n).to_owned()).collect(),
            roles: roles.to_vec(),
        }
    }

    #[test]
    fn rules_match_names_namespaces_and_roles() {
        let authorizer = Authorizer::new(&AuthzConfig {
            rules: vec![
                rule(&["token:oncall"], &["orders"], &[Role::Read]),
                rule(
                    &["group:temporal-admins"],
                    &["*"],
                    &[Role::Read, Role::Write],
                ),
                rule(&["*"], &["public"], &[Role::Read]),
            ],
        });
        let oncall = principal(&["token:oncall"]);
        assert!(authorizer.allows(&oncall, "orders", Role::Read));
        assert!(!authorizer.allows(&oncall, "orders", Role::Write));
        assert!(!authorizer.allows(&oncall, "payments", Role::Read));
        assert!(authorizer.allows(&oncall, "public", Role::Read));

        let admin = principal(&["sub:1234", "email:a@example.com", "group:temporal-admins"]);
        assert!(authorizer.allows(&admin, "anything", Role::Write));
        assert!(authorizer.allows(&admin, "orders", Role::Read));

        let nobody = principal(&["sub:999"]);
        assert!(!authorizer.allows(&nobody, "orders", Role::Read));
        assert!(authorizer.allows(&nobody, "public", Role::Read));
        assert!(!authorizer.allows(&nobody, "public", Role::Write));
        // "*" is anyone authenticated, never the anonymous principal.
        assert!(!authorizer.allows(&Principal::anonymous(), "public", Role::Read));
    }

    #[test]
    fn no_rules_deny_everything() {
        let authorizer = Authorizer::new(&AuthzConfig::default());
        assert_eq!(authorizer.rule_count(), 0);
        assert!(!authorizer.allows(&principal(&["token:oncall"]), "orders", Role::Read));
    }

    #[test]
    fn names_are_compared_exactly() {
        let authorizer = Authorizer::new(&AuthzConfig {
            rules: vec![rule(&["group:admins"], &["orders"], &[Role::Read])],
        });
        assert!(!authorizer.allows(&principal(&["group:Admins"]), "orders", Role::Read));
        assert!(!authorizer.allows(&principal(&["group:admins2"]), "orders", Role::Read));
        assert!(!authorizer.allows(&principal(&["email:group:admins"]), "orders", Role::Read));
        assert!(!authorizer.allows(&principal(&["group:admins"]), "Orders", Role::Read));
    }
}
