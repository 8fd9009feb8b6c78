//! The S3 client, configured as the AWS CLI resolves it (environment, profile, the profile's
//! `s3` settings, CA bundle), our retry and timeout numbers, and the effective configuration `-D` shows.

use std::time::Duration;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::Client;

use super::error::{one_line, CONFIG_PROBLEM};
use super::limits::MAX_PARTS;
use super::settings::{Addressing, Multipart, ProfileS3};
use crate::OUTPUT;

/// How long `-D` waits for the credential chain (an SSO or `credential_process` source may
/// call out): long enough for a slow identity provider, short enough that a diagnostic run
/// that cannot find credentials still answers.
const CREDENTIALS_LOOKUP_TIMEOUT: Duration = Duration::from_secs(20);

/// `AWS_PROFILE` names a profile that no configuration file defines?
async fn missing_profile() -> Option<String> {
    let name = std::env::var("AWS_PROFILE")
        .ok()
        .filter(|n| !n.is_empty())?;
    use aws_types::os_shim_internal::{Env, Fs};
    let found =
        match aws_config::profile::load(&Fs::real(), &Env::real(), &Default::default(), None).await
        {
            Ok(profiles) => profiles.get_profile(&name).is_some(),
            Err(_) => false,
        };
    let file = |var: &str, default: &str| {
        std::env::var(var)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.to_string())
    };
    (!found).then(|| {
        format!(
            "profile `{name}` named by AWS_PROFILE is not in {} or {}",
            file("AWS_CONFIG_FILE", "~/.aws/config"),
            file("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials")
        )
    })
}

/// Is an endpoint other than AWS's configured (env or profile), as the AWS CLI would find it?
fn custom_endpoint(sdk: &aws_types::SdkConfig) -> Option<String> {
    let key = aws_types::service_config::ServiceConfigKey::builder()
        .service_id("S3")
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .ok()?;
    sdk.service_config()
        .and_then(|c| c.load_config(key))
        .or_else(|| sdk.endpoint_url().map(str::to_string))
}

/// Attempts per request when the user configures no retries: a backup runs unattended, so
/// it rides out a minute of trouble instead of the SDK's 3 attempts (about 3 s).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;

/// Backoff before the first retry (full jitter: a random wait up to this), doubling each time.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);

/// Cap on one backoff: with 8 attempts the waits add up to at most 1+2+4+8+10+10+10 = 45 s.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// A TCP (and TLS) connection that is not up by then is a failed attempt.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A request whose body has been sent and that gets no response headers by then is a failed
/// attempt (the AWS CLI's read timeout is also 60 s). See [`crate::s3::http`].
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// Overrides [`RESPONSE_TIMEOUT`] (seconds, fractions allowed); the fault tests use it.
pub const RESPONSE_TIMEOUT_ENV: &str = "CBACK3_RESPONSE_TIMEOUT";

/// Finding credentials (SSO, `credential_process`, web identity, instance metadata) that takes
/// longer fails the requests waiting for them. Without it the SDK waits as long as all retries
/// of a request could take (125 s here), a `credential_process` that hangs included.
pub const CREDENTIALS_TIMEOUT: Duration = Duration::from_secs(30);

/// Overrides [`CREDENTIALS_TIMEOUT`] (seconds, fractions allowed); the tests use it.
pub const CREDENTIALS_TIMEOUT_ENV: &str = "CBACK3_CREDENTIALS_TIMEOUT";

/// Has the user set `AWS_MAX_ATTEMPTS`, `AWS_RETRY_MODE`, or `max_attempts` / `retry_mode` in
/// the selected profile? Then their retry settings apply unchanged.
async fn retries_configured() -> bool {
    if std::env::var_os("AWS_MAX_ATTEMPTS").is_some()
        || std::env::var_os("AWS_RETRY_MODE").is_some()
    {
        return true;
    }
    use aws_types::os_shim_internal::{Env, Fs};
    match aws_config::profile::load(&Fs::real(), &Env::real(), &Default::default(), None).await {
        Ok(profiles) => {
            profiles.get("max_attempts").is_some() || profiles.get("retry_mode").is_some()
        }
        Err(_) => false,
    }
}

fn response_timeout() -> Duration {
    seconds_from_env(RESPONSE_TIMEOUT_ENV).unwrap_or(RESPONSE_TIMEOUT)
}

fn credentials_timeout() -> Duration {
    seconds_from_env(CREDENTIALS_TIMEOUT_ENV).unwrap_or(CREDENTIALS_TIMEOUT)
}

fn seconds_from_env(name: &str) -> Option<Duration> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        // A value too large for a Duration (1e300) would panic in from_secs_f64.
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
}

/// A PEM file of CA certificates to trust instead of the system's roots, and where its
/// path was found (`AWS_CA_BUNDLE`, or `ca_bundle` in the named profile).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaBundle {
    pub path: std::path::PathBuf,
    pub source: String,
}

/// The selected profile of `~/.aws/config` and `~/.aws/credentials` (or `AWS_CONFIG_FILE` /
/// `AWS_SHARED_CREDENTIALS_FILE`): `AWS_PROFILE`, else `default`. None when the files
/// cannot be parsed (the SDK then reports the problem where it matters).
async fn profile_set() -> Option<aws_config::profile::ProfileSet> {
    use aws_types::os_shim_internal::{Env, Fs};
    aws_config::profile::load(&Fs::real(), &Env::real(), &Default::default(), None)
        .await
        .ok()
}

/// The CA bundle as the AWS CLI finds it: `AWS_CA_BUNDLE`, then the selected profile's
/// `ca_bundle`. A leading `~/` means the home directory.
fn ca_bundle(profiles: Option<&aws_config::profile::ProfileSet>) -> Option<CaBundle> {
    let (raw, source) = match std::env::var("AWS_CA_BUNDLE") {
        Ok(v) if !v.trim().is_empty() => (v, "AWS_CA_BUNDLE".to_string()),
        _ => {
            let p = profiles?;
            let v = p.get("ca_bundle").filter(|v| !v.trim().is_empty())?;
            (
                v.to_string(),
                format!("ca_bundle of profile {}", p.selected_profile()),
            )
        }
    };
    let raw = raw.trim();
    let path = match (raw.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => std::path::Path::new(&home).join(rest),
        _ => raw.into(),
    };
    Some(CaBundle { path, source })
}

/// Reads the CA bundle and checks every certificate in it (the HTTP client would panic on
/// one it cannot parse). The result trusts these certificates only, as the AWS CLI does.
fn load_ca_bundle(ca: &CaBundle) -> Result<aws_smithy_http_client::tls::TlsContext, String> {
    use aws_smithy_http_client::tls::{TlsContext, TrustStore};
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let what = format!("CA bundle {} (from {})", ca.path.display(), ca.source);
    let pem = std::fs::read(&ca.path).map_err(|e| format!("cannot read the {what}: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the {what} is not a valid PEM file: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "the {what} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        ));
    }
    let mut roots = rustls::RootCertStore::empty();
    for (i, cert) in certs.into_iter().enumerate() {
        roots
            .add(cert)
            .map_err(|e| format!("certificate {} in the {what} cannot be used: {e}", i + 1))?;
    }
    TlsContext::builder()
        .with_trust_store(TrustStore::empty().with_pem_certificate(pem))
        .build()
        .map_err(|e| format!("the {what} cannot be used: {e}"))
}

/// What the S3 client is built from, resolved as the AWS CLI resolves it.
struct Setup {
    sdk: aws_types::SdkConfig,
    endpoint: Option<String>,
    user_retries: bool,
    ca: Option<CaBundle>,
    /// The selected profile's `s3` settings.
    s3: ProfileS3,
}

/// Whether the `s3` settings can be used together with the endpoint: S3 Transfer
/// Acceleration and dual-stack have endpoints of their own, and acceleration needs
/// virtual-hosted addressing.
fn check_s3_settings(s3: &ProfileS3, endpoint: Option<&str>) -> Result<(), String> {
    let p = &s3.profile;
    for (on, key) in [
        (s3.use_accelerate_endpoint, "use_accelerate_endpoint"),
        (s3.use_dualstack_endpoint, "use_dualstack_endpoint"),
    ] {
        if let (Some(true), Some(url)) = (on, endpoint) {
            return Err(format!(
                "s3 setting {key} = true of profile {p} cannot be used with the custom endpoint {url}"
            ));
        }
    }
    if s3.use_accelerate_endpoint == Some(true) && s3.addressing_style == Some(Addressing::Path) {
        return Err(format!(
            "s3 setting use_accelerate_endpoint = true of profile {p} cannot be used with addressing_style = path"
        ));
    }
    Ok(())
}

/// Path-style addressing? `addressing_style` of the profile's `s3` settings; `auto` (and no
/// setting) means path style with a custom endpoint, virtual-hosted against AWS.
fn path_style(s3: &ProfileS3, endpoint: Option<&str>) -> bool {
    match s3.addressing_style.unwrap_or(Addressing::Auto) {
        Addressing::Path => true,
        Addressing::Virtual => false,
        Addressing::Auto => endpoint.is_some(),
    }
}

/// Credentials whose expiry has passed when they are handed over are refused, one line
/// naming the source and the time. The SDK takes them as they come (a `credential_process`
/// answering with an `Expiration` in the past), and a server that does not check it (or
/// one that does, with an error that does not say why) would decide what happens next.
#[derive(Debug)]
struct Unexpired(aws_credential_types::provider::SharedCredentialsProvider);

impl aws_credential_types::provider::ProvideCredentials for Unexpired {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::new(async move {
            let creds = self.0.provide_credentials().await?;
            match creds.expiry() {
                Some(at) if at <= std::time::SystemTime::now() => Err(
                    aws_credential_types::provider::error::CredentialsError::invalid_configuration(
                        expired_message(&creds, at),
                    ),
                ),
                _ => Ok(creds),
            }
        })
    }
}

/// "expired credentials: the credentials from credential_process expired at ..." (see
/// [`super::error::EXPIRED_CREDENTIALS`]).
fn expired_message(creds: &aws_credential_types::Credentials, at: std::time::SystemTime) -> String {
    use aws_credential_types::credential_feature::AwsCredentialFeature as F;
    let process = creds.get_property::<Vec<F>>().is_some_and(|f| {
        f.iter()
            .any(|f| matches!(f, F::CredentialsProcess | F::CredentialsProfileProcess))
    });
    let source = if process {
        "credential_process of the profile"
    } else {
        "credential provider"
    };
    let when = aws_smithy_types::DateTime::from(at)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_else(|_| format!("{at:?}"));
    format!(
        "{}: the credentials from the {source} expired at {when} (its Expiration); they are not used",
        super::error::EXPIRED_CREDENTIALS
    )
}

fn refuse_expired_credentials(sdk: aws_types::SdkConfig) -> aws_types::SdkConfig {
    match sdk.credentials_provider() {
        Some(p) => sdk
            .to_builder()
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(Unexpired(p)),
            )
            .build(),
        None => sdk,
    }
}

/// Resolves the configuration. The HTTPS client (with the CA bundle, if any) is given to the
/// loader too, so credential providers that call out (SSO, STS) trust the same roots.
async fn setup() -> Result<Setup, String> {
    let profiles = profile_set().await;
    let s3 = ProfileS3::from_profiles(profiles.as_ref())?;
    let ca = ca_bundle(profiles.as_ref());
    let tls = ca.as_ref().map(load_ca_bundle).transpose()?;
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(crate::s3::http::default_https_client(tls))
        .load()
        .await;
    let sdk = refuse_expired_credentials(sdk);
    let endpoint = custom_endpoint(&sdk);
    check_s3_settings(&s3, endpoint.as_deref())?;
    let user_retries = retries_configured().await;
    Ok(Setup {
        sdk,
        endpoint,
        user_retries,
        ca,
        s3,
    })
}

fn s3_config(setup: &Setup) -> aws_sdk_s3::Config {
    let sdk = &setup.sdk;
    let mut builder = aws_sdk_s3::config::Builder::from(sdk);
    if path_style(&setup.s3, setup.endpoint.as_deref()) {
        builder = builder.force_path_style(true);
    }
    if setup.s3.use_accelerate_endpoint == Some(true) {
        builder = builder.accelerate(true);
    }
    if let Some(on) = setup.s3.use_dualstack_endpoint {
        builder = builder.use_dual_stack(on);
    }
    if !setup.user_retries {
        builder = builder.retry_config(
            RetryConfig::standard()
                .with_max_attempts(DEFAULT_MAX_ATTEMPTS)
                .with_initial_backoff(INITIAL_BACKOFF)
                .with_max_backoff(MAX_BACKOFF),
        );
    }
    builder = builder.identity_cache(
        aws_sdk_s3::config::IdentityCache::lazy()
            .load_timeout(credentials_timeout())
            .build(),
    );
    builder = builder.timeout_config(
        TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build(),
    );
    let http = sdk
        .http_client()
        .unwrap_or_else(|| crate::s3::http::default_https_client(None));
    builder = builder.http_client(crate::s3::http::with_response_timeout(
        http,
        response_timeout(),
    ));
    builder.build()
}

/// Builds the S3 client from the standard AWS configuration chain: environment,
/// `~/.aws/config` and `~/.aws/credentials`, `AWS_PROFILE`, `AWS_ENDPOINT_URL[_S3]` and
/// `endpoint_url`, checksum and retry settings, `AWS_CA_BUNDLE` and `ca_bundle`. A custom
/// endpoint gets path-style addressing, which S3-compatible servers need.
///
/// Retries: the user's settings if any, otherwise standard mode with
/// [`DEFAULT_MAX_ATTEMPTS`] and backoff from [`INITIAL_BACKOFF`] to [`MAX_BACKOFF`].
/// Timeouts: [`CONNECT_TIMEOUT`] to connect, [`RESPONSE_TIMEOUT`] for an answer once a
/// request is sent, and the SDK's stalled-stream protection (no progress for 20 s) while a
/// body moves. So a request can fail for good only after bounded time, and an unreachable
/// endpoint fails the run within about a minute.
///
/// A CA bundle that cannot be read or holds no usable certificate is an error (one line).
pub async fn client() -> Result<Client, String> {
    client_with_endpoint().await.map(|(client, _)| client)
}

/// [`client`], and the custom endpoint it talks to (`None`: AWS itself), which the run lock
/// needs to tell targets apart.
pub async fn client_with_endpoint() -> Result<(Client, Option<String>), String> {
    client_for_run()
        .await
        .map(|(client, endpoint, _)| (client, endpoint))
}

/// [`client_with_endpoint`], and the profile's `s3` settings that the run applies itself
/// (concurrency, multipart sizes, bandwidth). A value the AWS CLI would refuse, or one that
/// cannot go with the endpoint, is an error (one line).
pub async fn client_for_run() -> Result<(Client, Option<String>, ProfileS3), String> {
    for warning in super::config_files::check().await? {
        log::warn!(target: crate::FLOW, "{warning}");
    }
    let problem = missing_profile().await;
    if let Ok(mut p) = CONFIG_PROBLEM.lock() {
        *p = problem;
    }
    let setup = setup().await?;
    if let Some(url) = &setup.endpoint {
        log::debug!(target: OUTPUT, "S3 endpoint {url}");
    }
    let path = path_style(&setup.s3, setup.endpoint.as_deref());
    log::debug!(target: OUTPUT, "S3 addressing: {}{}{}", if path { "path-style" } else { "virtual-hosted" },
        if setup.s3.use_accelerate_endpoint == Some(true) { ", Transfer Acceleration" } else { "" },
        if setup.s3.use_dualstack_endpoint == Some(true) { ", dual-stack" } else { "" });
    for key in &setup.s3.not_used {
        log::debug!(target: OUTPUT, "s3 setting {key} of profile {} is not used by this tool", setup.s3.profile);
    }
    if let Some(ca) = &setup.ca {
        log::debug!(target: OUTPUT, "Trusting only the CA bundle {} (from {})", ca.path.display(), ca.source);
    }
    let conf = s3_config(&setup);
    if let Some(r) = conf.retry_config() {
        log::debug!(target: OUTPUT, "S3 retries: {:?} mode, {} attempts, backoff {:?} to {:?}", r.mode(), r.max_attempts(), r.initial_backoff(), r.max_backoff());
    }
    Ok((Client::from_conf(conf), setup.endpoint.clone(), setup.s3))
}

/// The configuration a run would use, as (title, value) lines for `-D`: where the profile,
/// region, endpoint and CA bundle come from, addressing, sizes, checksums, retries and
/// timeouts, and whether credentials were found and from which kind of source. Never a
/// secret: no key, token or credential value is shown. `max_concurrency` and
/// `max_bandwidth` are the command line's `--maxConcurrency` and `--maxBandwidth`, if given.
pub async fn effective_configuration(
    max_concurrency: Option<usize>,
    max_bandwidth: Option<u64>,
) -> Vec<(&'static str, String)> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let mut out = Vec::new();
    let profiles = profile_set().await;
    let profile_name = profiles
        .as_ref()
        .map(|p| p.selected_profile().to_string())
        .or_else(|| env("AWS_PROFILE"))
        .unwrap_or_else(|| "default".into());
    let profile_from = if env("AWS_PROFILE").is_some() {
        "from AWS_PROFILE"
    } else {
        "no AWS_PROFILE"
    };
    let files = |var: &str, default: &str| {
        let path = env(var).unwrap_or_else(|| {
            let home = std::env::var("HOME").unwrap_or_default();
            format!("{home}/.aws/{default}")
        });
        let state = if std::path::Path::new(&path).is_file() {
            ""
        } else {
            " (missing)"
        };
        format!("{path}{state}")
    };
    out.push((
        "AWS profile",
        format!(
            "{profile_name} ({profile_from}; {}, {})",
            files("AWS_CONFIG_FILE", "config"),
            files("AWS_SHARED_CREDENTIALS_FILE", "credentials")
        ),
    ));
    match super::config_files::check().await {
        Err(e) => out.push(("AWS files", format!("UNUSABLE (a run fails): {e}"))),
        Ok(w) if !w.is_empty() => out.push(("AWS files", format!("WARNING: {}", w.join(" ")))),
        Ok(_) => {}
    }
    let in_profile = |key: &str| profiles.as_ref().and_then(|p| p.get(key)).is_some();
    let ca = ca_bundle(profiles.as_ref());
    out.push((
        "CA bundle",
        match &ca {
            None => "none: the system's root certificates".into(),
            Some(c) => match load_ca_bundle(c) {
                Ok(_) => format!(
                    "{} (from {}; instead of the system's roots)",
                    c.path.display(),
                    c.source
                ),
                Err(e) => format!("UNUSABLE: {e}"),
            },
        },
    ));
    let s3 = ProfileS3::from_profiles(profiles.as_ref());
    let setup = match setup().await {
        Ok(s) => s,
        Err(_) => {
            // The CA bundle or the s3 settings are unusable (each shown): resolve the rest
            // without them.
            let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .load()
                .await;
            Setup {
                endpoint: custom_endpoint(&sdk),
                sdk,
                user_retries: retries_configured().await,
                ca,
                s3: s3.clone().unwrap_or_default(),
            }
        }
    };
    if let Err(e) = s3.and_then(|s| check_s3_settings(&s, setup.endpoint.as_deref())) {
        out.push(("s3 settings", format!("UNUSABLE (a run fails): {e}")));
    }
    let s3 = &setup.s3;
    let from_profile = |set: bool, key: &str| {
        if set {
            format!("s3 {key} of profile {profile_name}")
        } else {
            "default".to_string()
        }
    };
    let conf = s3_config(&setup);
    let region_from = ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .into_iter()
        .find(|k| env(k).is_some())
        .map(|k| format!("from {k}"))
        .unwrap_or_else(|| {
            if in_profile("region") {
                format!("from profile {profile_name}")
            } else {
                "from instance metadata, if any".into()
            }
        });
    out.push((
        "region",
        match conf.region() {
            Some(r) => format!("{r} ({region_from})"),
            None => "none (set AWS_REGION or region in the profile)".into(),
        },
    ));
    let endpoint_from = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
        .into_iter()
        .find(|k| env(k).is_some())
        .map(|k| format!("from {k}"))
        .unwrap_or_else(|| format!("from profile {profile_name}"));
    let style = format!(
        "{} addressing ({})",
        if path_style(s3, setup.endpoint.as_deref()) {
            "path-style"
        } else {
            "virtual-hosted"
        },
        match s3.addressing_style {
            Some(a) => format!(
                "s3 addressing_style = {} of profile {profile_name}",
                format!("{a:?}").to_lowercase()
            ),
            None => "auto: path-style with a custom endpoint".into(),
        }
    );
    let mut extras = String::new();
    if s3.use_accelerate_endpoint == Some(true) {
        extras += &format!(
            ", Transfer Acceleration (s3 use_accelerate_endpoint of profile {profile_name})"
        );
    }
    if s3.use_dualstack_endpoint == Some(true) {
        extras += &format!(", dual-stack (s3 use_dualstack_endpoint of profile {profile_name})");
    }
    out.push((
        "endpoint",
        match &setup.endpoint {
            Some(url) => format!("{url} ({endpoint_from}), {style}{extras}"),
            None => format!("AWS S3 for the region, {style}{extras}"),
        },
    ));
    out.push((
        "max concurrency",
        match (max_concurrency, s3.max_concurrent_requests) {
            (Some(n), _) => format!("{n} requests (--maxConcurrency)"),
            (None, Some(n)) => format!(
                "{n} requests ({})",
                from_profile(true, "max_concurrent_requests")
            ),
            (None, None) => format!(
                "{} requests (default)",
                super::settings::DEFAULT_MAX_CONCURRENCY
            ),
        },
    ));
    let multipart = Multipart::from_profile(s3);
    out.push((
        "multipart",
        format!(
            "files of {} or more ({}), in parts of {} ({}; more for files over {}: at most {MAX_PARTS} parts)",
            crate::s3::settings::show_size(multipart.threshold),
            from_profile(s3.multipart_threshold.is_some(), "multipart_threshold"),
            crate::s3::settings::show_size(multipart.part_size),
            from_profile(s3.multipart_chunksize.is_some(), "multipart_chunksize"),
            crate::s3::settings::show_size(multipart.part_size * MAX_PARTS)
        ),
    ));
    out.push((
        "max bandwidth",
        match (max_bandwidth, s3.max_bandwidth) {
            (Some(r), _) => format!(
                "{} for all uploads (a restore: downloads) together (--maxBandwidth)",
                crate::s3::settings::show_rate(r)
            ),
            (None, Some(r)) => format!(
                "{} for all uploads (a restore: downloads) together ({})",
                crate::s3::settings::show_rate(r),
                from_profile(true, "max_bandwidth")
            ),
            (None, None) => "no limit (default)".into(),
        },
    ));
    if !s3.not_used.is_empty() {
        out.push((
            "s3 settings not used",
            format!("{} (see docs/aws.md)", s3.not_used.join(", ")),
        ));
    }
    let request = match conf.request_checksum_calculation() {
        Some(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired) => {
            "when_required (uploads carry no checksum)"
        }
        _ => "when_supported (CRC64NVME on every upload)",
    };
    let response = match conf.response_checksum_validation() {
        Some(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired) => "when_required",
        _ => "when_supported",
    };
    out.push((
        "checksums",
        format!("request_checksum_calculation {request}, response_checksum_validation {response}"),
    ));
    out.push((
        "retries",
        match conf.retry_config() {
            Some(r) => format!(
                "{} mode, {} attempts, backoff {} s to {} s ({})",
                format!("{:?}", r.mode()).to_lowercase(),
                r.max_attempts(),
                r.initial_backoff().as_secs_f64(),
                r.max_backoff().as_secs_f64(),
                if setup.user_retries {
                    "the user's AWS_MAX_ATTEMPTS / AWS_RETRY_MODE / profile"
                } else {
                    "this tool's default"
                }
            ),
            None => "none".into(),
        },
    ));
    let response_from = if env(RESPONSE_TIMEOUT_ENV).is_some() {
        format!(" (from {RESPONSE_TIMEOUT_ENV})")
    } else {
        String::new()
    };
    out.push((
        "timeouts",
        format!(
            "connect {} s, response {} s{response_from}, stalled body 20 s, credentials {} s",
            CONNECT_TIMEOUT.as_secs_f64(),
            response_timeout().as_secs_f64(),
            credentials_timeout().as_secs_f64()
        ),
    ));
    out.push(("credentials", credentials_source(&setup.sdk).await));
    out
}

/// Whether credentials can be found, and the kind of source they came from (never a value).
async fn credentials_source(sdk: &aws_types::SdkConfig) -> String {
    use aws_credential_types::credential_feature::AwsCredentialFeature as F;
    use aws_credential_types::provider::ProvideCredentials;
    let Some(provider) = sdk.credentials_provider() else {
        return "none configured".into();
    };
    let found = tokio::time::timeout(CREDENTIALS_LOOKUP_TIMEOUT, provider.provide_credentials());
    let creds = match found.await {
        Err(_) => {
            return format!(
                "NOT FOUND: no answer within {} s",
                CREDENTIALS_LOOKUP_TIMEOUT.as_secs()
            )
        }
        Ok(Err(e)) => {
            return format!(
                "NOT FOUND in the environment, the profile's files, SSO, web identity, \
                 container or instance metadata ({})",
                one_line(&e.to_string())
            )
        }
        Ok(Ok(c)) => c,
    };
    let kinds: Vec<&str> = creds
        .get_property::<Vec<F>>()
        .map(|features| {
            features
                .iter()
                .filter_map(|f| match f {
                    F::CredentialsEnvVars => Some("environment variables"),
                    F::CredentialsProfile => Some("profile (static keys)"),
                    F::CredentialsProfileSourceProfile => Some("profile source_profile"),
                    F::CredentialsProfileNamedProvider => Some("profile credential_source"),
                    F::CredentialsSso | F::CredentialsProfileSso => Some("SSO"),
                    F::CredentialsProcess | F::CredentialsProfileProcess => {
                        Some("credential_process")
                    }
                    F::CredentialsStsAssumeRole => Some("assumed role (STS)"),
                    F::CredentialsEnvVarsStsWebIdToken
                    | F::CredentialsProfileStsWebIdToken
                    | F::CredentialsStsAssumeRoleWebId => Some("web identity"),
                    F::CredentialsHttp => Some("container endpoint"),
                    F::CredentialsImds => Some("EC2 instance metadata"),
                    F::CredentialsLogin | F::CredentialsProfileLogin => Some("console login"),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let mut kinds_unique: Vec<&str> = Vec::new();
    for k in kinds {
        if !kinds_unique.contains(&k) {
            kinds_unique.push(k);
        }
    }
    if kinds_unique.is_empty() {
        "found (source not reported by the SDK)".into()
    } else {
        format!("found, from {}", kinds_unique.join(", "))
    }
}
