//! Vault sessions: one token at a time, obtained lazily, renewed before a third of its TTL is
//! left, replaced by a new login when renewal stops extending it or Vault refuses it. Logins are
//! single flight; a failed login is remembered for [`super::LOGIN_RETRY_AFTER`]. Credential files
//! are read here, at every login, so an agent may replace them.

use super::*;

/// One token and what is known about its lifetime.
pub(super) struct Session {
    /// A client carrying the token (in `settings.token` and `middle.token`, wiped on drop).
    pub(super) client: VaultClient,
    /// Which login produced the token; renewals keep it.
    pub(super) generation: u64,
    /// When the token stops working; `None` when it never expires (a root token).
    expires: Option<Instant>,
    /// The TTL the token had when obtained: renewal starts when a third of it is left.
    base_ttl: Duration,
    /// Whether Vault allows renewing it.
    renewable: bool,
    /// Renewal no longer extends the token (max TTL reached, or refused).
    renew_exhausted: bool,
    /// After a renewal that failed for want of an answer: when to try again.
    renew_after: Option<Instant>,
}

impl Session {
    pub(super) fn expired(&self, now: Instant) -> bool {
        self.expires.is_some_and(|at| now >= at)
    }

    /// Less than a third of the TTL is left (or it is gone).
    pub(super) fn due(&self, now: Instant) -> bool {
        self.expires
            .is_some_and(|at| at.saturating_duration_since(now) < self.base_ttl / 3)
    }

    pub(super) fn token(&self) -> &str {
        &self.client.middle.token
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.client.settings.token.zeroize();
        self.client.middle.token.zeroize();
    }
}

/// State behind the refresh lock.
#[derive(Default)]
pub(super) struct RefreshState {
    /// The last failed login and when it happened.
    last_failure: Option<(Instant, ProviderError)>,
}

/// Reads a credential file (token, role id, secret id, JWT): trimmed, visible ASCII only.
/// `private`: warn when group or others may read it (Kubernetes mounts service account tokens
/// 0644 on purpose, so JWT files are not checked).
pub(super) async fn read_credential(
    path: &Path,
    what: &str,
    private: bool,
) -> Result<Zeroizing<String>, ProviderError> {
    let misconfigured = |message: String| ProviderError::Misconfigured(format!("vault: {message}"));
    let bytes = Zeroizing::new(tokio::fs::read(path).await.map_err(|error| {
        misconfigured(format!("cannot read {what} {}: {error}", path.display()))
    })?);
    if private
        && let Ok(metadata) = tokio::fs::metadata(path).await
        && metadata.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            "vault {what} is accessible by group or others; it holds a credential: chmod 600"
        );
    }
    let text = std::str::from_utf8(&bytes)
        .map(str::trim)
        .ok()
        .filter(|text| valid_header_token(text))
        .ok_or_else(|| {
            misconfigured(format!(
                "{what} {} does not hold a credential (empty, or characters other than visible \
                 ASCII)",
                path.display()
            ))
        })?;
    Ok(Zeroizing::new(text.to_owned()))
}

impl VaultTransit {
    /// A usable token: the current one while more than a third of its TTL is left; otherwise
    /// renewed, or replaced by a new login. Single flight: while one caller refreshes, others
    /// keep using the current token if it has not expired.
    pub(super) async fn session(&self) -> Result<Arc<Session>, ProviderError> {
        let now = Instant::now();
        let current = self.session.load_full();
        if let Some(session) = &current
            && !session.due(now)
        {
            return Ok(Arc::clone(session));
        }
        let mut state = match self.refresh.try_lock() {
            Ok(state) => state,
            Err(_) => {
                if let Some(session) = current.filter(|session| !session.expired(now)) {
                    return Ok(session);
                }
                self.refresh.lock().await
            }
        };
        let now = Instant::now();
        let mut current = self.session.load_full();
        if let Some(session) = &current
            && !session.due(now)
        {
            return Ok(Arc::clone(session));
        }
        if let Some(session) = &current
            && session.renewable
            && !session.renew_exhausted
            && session.renew_after.is_none_or(|after| now >= after)
            && !session.expired(now)
        {
            let renewed = Arc::new(self.renew(session).await);
            self.session.store(Some(Arc::clone(&renewed)));
            if !renewed.due(Instant::now()) {
                return Ok(renewed);
            }
            current = Some(renewed);
        }
        let can_login = !matches!(self.auth, VaultAuth::Token(_));
        if let Some(session) = &current
            && !session.expired(now)
            && !can_login
        {
            // A given token cannot be replaced: use it until it expires.
            return Ok(Arc::clone(session));
        }
        if let Some((at, error)) = &state.last_failure
            && now.saturating_duration_since(*at) < LOGIN_RETRY_AFTER
        {
            return match current.filter(|session| !session.expired(now)) {
                Some(session) => Ok(session),
                None => Err(error.clone()),
            };
        }
        match self.login().await {
            Ok(session) => {
                state.last_failure = None;
                let session = Arc::new(session);
                self.session.store(Some(Arc::clone(&session)));
                Ok(session)
            }
            Err(error) => {
                tracing::warn!(
                    provider = "vault",
                    auth = self.auth_method(),
                    %error,
                    "vault login failed"
                );
                state.last_failure = Some((Instant::now(), error.clone()));
                match current.filter(|session| !session.expired(Instant::now())) {
                    Some(session) => Ok(session),
                    None => Err(error),
                }
            }
        }
    }

    /// Forgets the session of login `generation` (its token is dead), unless a newer one
    /// replaced it already.
    pub(super) async fn invalidate(&self, generation: u64) {
        let mut state = self.refresh.lock().await;
        if self
            .session
            .load()
            .as_ref()
            .is_some_and(|session| session.generation == generation)
        {
            self.session.store(None);
            // The dead token is a reason to try a login now, whatever failed a moment ago.
            state.last_failure = None;
        }
    }

    /// Renews the session's token. Never fails: a refused renewal (or one capped by the max
    /// TTL) marks the copy as exhausted, so the caller logs in again (or keeps the token until it
    /// expires); an unanswered one is tried again after [`LOGIN_RETRY_AFTER`].
    pub(super) async fn renew(&self, session: &Session) -> Session {
        let sent = Instant::now();
        let result = self
            .send(&session.client, &|client: &VaultClient| {
                http_request(
                    client,
                    RawCall::post("auth/token/renew-self".to_owned(), b"{}".to_vec()),
                )
            })
            .await
            .and_then(|body| parse::<AuthAnswer<RenewAuth>>(&body, "renew-self"))
            .and_then(|answer| {
                answer
                    .auth
                    .ok_or_else(|| CallError::Response("renew-self: no auth in answer".to_owned()))
            });
        let mut renewed = Session {
            client: self.client(session.token()),
            generation: session.generation,
            expires: session.expires,
            base_ttl: session.base_ttl,
            renewable: session.renewable,
            renew_exhausted: false,
            renew_after: None,
        };
        match result {
            Ok(auth) => {
                let lease = Duration::from_secs(auth.lease_duration);
                renewed.expires = (auth.lease_duration > 0).then(|| sent + lease);
                renewed.renewable = auth.renewable;
                // Capped by the token's max TTL: renewing again would not help.
                renewed.renew_exhausted = lease < session.base_ttl / 3;
                tracing::debug!(
                    provider = "vault",
                    ttl_seconds = auth.lease_duration,
                    "renewed the vault token"
                );
            }
            Err(error) => {
                tracing::warn!(
                    provider = "vault",
                    error = %self.describe_error(&error),
                    "vault token renewal failed"
                );
                match error {
                    CallError::Status { code, .. } if (400..500).contains(&code) && code != 429 => {
                        renewed.renew_exhausted = true;
                    }
                    _ => renewed.renew_after = Some(Instant::now() + LOGIN_RETRY_AFTER),
                }
            }
        }
        renewed
    }

    /// Obtains a new token with the configured auth method.
    pub(super) async fn login(&self) -> Result<Session, ProviderError> {
        let sent = Instant::now();
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let (token, lease, renewable, what) = match &self.auth {
            VaultAuth::Token(source) => {
                let (token, what) = match source {
                    VaultToken::File(path) => (
                        read_credential(path, "token_file", true).await?,
                        format!("token from token_file {}", path.display()),
                    ),
                    VaultToken::Env { variable, value } => (
                        Zeroizing::new(value.expose_secret().to_owned()),
                        format!("token from environment variable {variable}"),
                    ),
                };
                let session = Session {
                    client: self.client(&token),
                    generation,
                    expires: None,
                    base_ttl: Duration::ZERO,
                    renewable: false,
                    renew_exhausted: false,
                    renew_after: None,
                };
                let lookup = self.lookup(&session).await.map_err(|error| {
                    if error.is_refusal() {
                        ProviderError::Denied(format!(
                            "vault refused the {what} (lookup-self answered: {}): it is expired \
                             or revoked, or its policy lacks auth/token/lookup-self (see \
                             policies/vault/kmscodec-sidecar.hcl)",
                            self.describe_error(&error)
                        ))
                    } else {
                        self.classify(Op::Health, "", error)
                    }
                })?;
                (token, lookup.ttl, lookup.renewable.unwrap_or(false), what)
            }
            VaultAuth::AppRole {
                mount,
                role_id_file,
                secret_id_file,
            } => {
                let role_id = read_credential(role_id_file, "role_id_file", false).await?;
                let secret_id = read_credential(secret_id_file, "secret_id_file", true).await?;
                self.login_as(Login::AppRole {
                    mount,
                    role_id,
                    secret_id,
                })
                .await?
            }
            VaultAuth::Kubernetes {
                mount,
                role,
                jwt_file,
            } => {
                let jwt = read_credential(jwt_file, "jwt_file", false).await?;
                self.login_as(Login::Kubernetes { mount, role, jwt })
                    .await?
            }
        };
        tracing::info!(
            provider = "vault",
            address = %self.address,
            auth = self.auth_method(),
            ttl_seconds = lease,
            renewable,
            "vault login succeeded ({what})"
        );
        let ttl = Duration::from_secs(lease);
        Ok(Session {
            client: self.client(&token),
            generation,
            expires: (lease > 0).then(|| sent + ttl),
            base_ttl: ttl,
            renewable,
            renew_exhausted: false,
            renew_after: None,
        })
    }

    /// Logs in with `login`: the token, its lease in seconds, whether it renews, and what the
    /// login was (for messages).
    async fn login_as(
        &self,
        login: Login<'_>,
    ) -> Result<(Zeroizing<String>, u64, bool, String), ProviderError> {
        let what = login.what();
        let auth = self
            .login_with(&what, &|client: &VaultClient| login.request(client))
            .await?;
        Ok((auth.client_token, auth.lease_duration, auth.renewable, what))
    }

    pub(super) async fn login_with<F>(
        &self,
        what: &str,
        build: &F,
    ) -> Result<LoginAuth, ProviderError>
    where
        F: Fn(&VaultClient) -> Result<http::Request<Vec<u8>>, CallError> + Sync,
    {
        let failed = |error: CallError| {
            let detail = self.describe_error(&error);
            match error {
                // Wrong credentials, unknown role, a JWT that does not match the role.
                CallError::Status { code, .. } if (400..500).contains(&code) && code != 429 => {
                    ProviderError::Denied(format!("vault {what} failed: {detail}"))
                }
                CallError::Build(_) => {
                    ProviderError::Misconfigured(format!("vault {what}: {detail}"))
                }
                CallError::Session(error) => error,
                _ => ProviderError::Unavailable(format!("vault {what}: {detail}")),
            }
        };
        let body = self.send(&self.anonymous, build).await.map_err(failed)?;
        let answer: AuthAnswer<LoginAuth> = parse(&body, "login").map_err(failed)?;
        let auth = answer
            .auth
            .ok_or_else(|| failed(CallError::Response("login answer has no auth".to_owned())))?;
        if !valid_header_token(&auth.client_token) {
            return Err(failed(CallError::Response(
                "login answer holds a malformed token".to_owned(),
            )));
        }
        Ok(auth)
    }

    /// `GET auth/token/lookup-self` with the session's token.
    pub(super) async fn lookup(&self, session: &Session) -> Result<LookupData, CallError> {
        let body = self
            .send(&session.client, &|client: &VaultClient| {
                http_request(client, LookupTokenSelfRequest::default())
            })
            .await?;
        parse::<DataAnswer<LookupData>>(&body, "lookup-self")?
            .data
            .ok_or_else(|| CallError::Response("lookup-self: no data in answer".to_owned()))
    }
}

/// A login's request, with the credentials read from their files for this login.
enum Login<'a> {
    AppRole {
        mount: &'a str,
        role_id: Zeroizing<String>,
        secret_id: Zeroizing<String>,
    },
    Kubernetes {
        mount: &'a str,
        role: &'a str,
        jwt: Zeroizing<String>,
    },
}

impl Login<'_> {
    fn what(&self) -> String {
        match self {
            Self::AppRole { mount, .. } => format!("approle login at auth/{mount}/login"),
            Self::Kubernetes { mount, role, .. } => {
                format!("kubernetes login as role {role:?} at auth/{mount}/login")
            }
        }
    }

    fn request(&self, client: &VaultClient) -> Result<http::Request<Vec<u8>>, CallError> {
        match self {
            Self::AppRole {
                mount,
                role_id,
                secret_id,
            } => http_request(
                client,
                LoginWithApproleRequest::builder()
                    .mount(*mount)
                    .role_id(role_id.as_str())
                    .secret_id(secret_id.as_str())
                    .build()
                    .map_err(build_error)?,
            ),
            Self::Kubernetes { mount, role, jwt } => http_request(
                client,
                LoginWithKubernetesRequest::builder()
                    .mount(*mount)
                    .role(*role)
                    .jwt(jwt.as_str())
                    .build()
                    .map_err(build_error)?,
            ),
        }
    }
}
