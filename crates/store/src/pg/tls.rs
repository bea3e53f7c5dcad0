//! TLS to PostgreSQL with libpq's meaning of `sslmode` and `sslrootcert`.
//!
//! `tokio-postgres` knows only `disable`, `prefer` and `require`, and never checks the server's
//! certificate itself: that is the TLS connector's job. So the connection string is read here
//! first: the TLS parameters are cut out, the rest goes to [`postgres::Config`] unchanged, and
//! the connector is built to verify as libpq would:
//!
//! | `sslmode`            | TLS                 | certificate checked                       |
//! |----------------------|---------------------|-------------------------------------------|
//! | `disable`            | never               | -                                         |
//! | `allow`, `prefer`    | if the server has it| no                                        |
//! | `require` (default¹) | always              | chain only, and only with `sslrootcert`   |
//! | `verify-ca`          | always              | chain against the roots                   |
//! | `verify-full`        | always              | chain, and the host name must match       |
//!
//! ¹ libpq's default is `prefer`; so is ours.
//!
//! The roots are the PEM file `sslrootcert` names; `sslrootcert=system`, or none given, means
//! `~/.postgresql/root.crt` when it exists (as libpq) and else the system's trust store. TLS is
//! never attempted over a Unix socket (the server does not offer it there, as with libpq).
//! Client certificates (`sslcert`, `sslkey`) are refused with a clear error: not supported yet.

use std::{path::PathBuf, str::FromStr, sync::Arc};

use percent_encoding::percent_decode_str;
use postgres::config::{Host, SslMode};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::WebPkiSupportedAlgorithms,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::{Result, StoreError};

/// How a connection string asks for TLS, libpq's way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl FromStr for Mode {
    type Err = StoreError;

    fn from_str(value: &str) -> Result<Mode> {
        Ok(match value {
            "disable" => Mode::Disable,
            "allow" => Mode::Allow,
            "prefer" => Mode::Prefer,
            "require" => Mode::Require,
            "verify-ca" => Mode::VerifyCa,
            "verify-full" => Mode::VerifyFull,
            other => {
                return Err(config_error(format!(
                    "sslmode '{other}' is not one of disable, allow, prefer, require, verify-ca, \
                     verify-full"
                )));
            }
        })
    }
}

/// The TLS parameters of a connection string, and the string without them.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub rest: String,
    pub sslmode: Option<String>,
    pub sslrootcert: Option<String>,
    pub sslcert: Option<String>,
    pub sslkey: Option<String>,
}

impl Parsed {
    fn take(&mut self, key: &str, value: String) -> bool {
        let slot = match key {
            "sslmode" => &mut self.sslmode,
            "sslrootcert" => &mut self.sslrootcert,
            "sslcert" => &mut self.sslcert,
            "sslkey" => &mut self.sslkey,
            _ => return false,
        };
        *slot = Some(value);
        true
    }
}

/// A connection's settings and the TLS connector that goes with them.
pub(crate) fn configure(url: &str) -> Result<(postgres::Config, MakeRustlsConnect)> {
    let parsed = split(url)?;
    let mut config = postgres::Config::from_str(&parsed.rest)?;
    if parsed.sslcert.is_some() || parsed.sslkey.is_some() {
        return Err(config_error(
            "client certificates (sslcert, sslkey) are not supported yet; authenticate with a \
             password or remove them"
                .into(),
        ));
    }
    let mode = parsed
        .sslmode
        .as_deref()
        .map_or(Ok(Mode::Prefer), str::parse)?;
    let only_unix = !config.get_hosts().is_empty()
        && config
            .get_hosts()
            .iter()
            .all(|host| !matches!(host, Host::Tcp(_)));
    config.ssl_mode(match mode {
        Mode::Disable => SslMode::Disable,
        _ if only_unix => SslMode::Disable,
        Mode::Allow | Mode::Prefer => SslMode::Prefer,
        Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
    });
    let explicit_roots = parsed
        .sslrootcert
        .as_deref()
        .filter(|path| *path != "system");
    let check = match mode {
        Mode::Disable | Mode::Allow | Mode::Prefer => Check::Nothing,
        Mode::Require if explicit_roots.is_none() => Check::Nothing,
        Mode::Require | Mode::VerifyCa => Check::Chain,
        Mode::VerifyFull => Check::ChainAndName,
    };
    Ok((config, connector(check, parsed.sslrootcert.as_deref())?))
}

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Nothing,
    Chain,
    ChainAndName,
}

fn connector(check: Check, sslrootcert: Option<&str>) -> Result<MakeRustlsConnect> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| config_error(format!("TLS set-up: {error}")))?;
    let verifier: Arc<dyn ServerCertVerifier> = match check {
        Check::Nothing => Arc::new(Unchecked(provider.signature_verification_algorithms)),
        Check::Chain | Check::ChainAndName => {
            let roots = Arc::new(roots(sslrootcert)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|error| config_error(format!("TLS roots: {error}")))?;
            if check == Check::Chain {
                Arc::new(ChainOnly(webpki))
            } else {
                webpki
            }
        }
    };
    let mut config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // Needed for `sslnegotiation=direct` (PostgreSQL 17); servers before that ignore it.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(MakeRustlsConnect::new(config))
}

/// The trust anchors: the PEM file named, else libpq's default file, else the system's.
fn roots(sslrootcert: Option<&str>) -> Result<RootCertStore> {
    let path = match sslrootcert {
        Some("system") => None,
        Some(path) => Some(PathBuf::from(path)),
        None => std::env::var_os("HOME")
            .map(|home| PathBuf::from(home).join(".postgresql/root.crt"))
            .filter(|path| path.is_file()),
    };
    let mut store = RootCertStore::empty();
    match path {
        Some(path) => {
            let shown = path.display();
            let certificates = CertificateDer::pem_file_iter(&path)
                .map_err(|error| config_error(format!("sslrootcert {shown}: {error}")))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| config_error(format!("sslrootcert {shown}: {error}")))?;
            let (added, _) = store.add_parsable_certificates(certificates);
            if added == 0 {
                return Err(config_error(format!(
                    "sslrootcert {shown} holds no usable PEM certificate"
                )));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                return Err(config_error(
                    "sslmode verify-ca/verify-full needs trust anchors and the system has none: \
                     name a PEM file with sslrootcert"
                        .into(),
                ));
            }
        }
    }
    Ok(store)
}

fn config_error(message: String) -> StoreError {
    StoreError::Config(format!("PostgreSQL connection string: {message}"))
}

/// `require` without roots: encrypted, server unauthenticated (libpq's meaning). The handshake
/// signature is still checked, so the peer holds the key of the certificate it shows.
#[derive(Debug)]
struct Unchecked(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a root; the name in the certificate is not compared
/// with the host (webpki checks the chain before the name, so a name error means the chain
/// passed).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Cuts the TLS parameters out of a URL (`postgres://…?sslmode=…&…`) or a libpq key/value
/// string, leaving everything else byte for byte.
pub(crate) fn split(url: &str) -> Result<Parsed> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        split_url(url)
    } else {
        split_key_value(url)
    }
}

fn split_url(url: &str) -> Result<Parsed> {
    let mut parsed = Parsed::default();
    let Some((base, query)) = url.split_once('?') else {
        parsed.rest = url.to_string();
        return Ok(parsed);
    };
    let mut kept = Vec::new();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |text: &str| {
            percent_decode_str(text)
                .decode_utf8()
                .map(|text| text.into_owned())
                .map_err(|_| config_error(format!("parameter '{key}' is not valid UTF-8")))
        };
        if !parsed.take(&decode(key)?, decode(value)?) {
            kept.push(pair);
        }
    }
    parsed.rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok(parsed)
}

fn split_key_value(text: &str) -> Result<Parsed> {
    let mut parsed = Parsed::default();
    let mut rest = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut at = 0;
    let skip_space = |mut at: usize| {
        while at < bytes.len() && bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        at
    };
    loop {
        let start = skip_space(at);
        if start == bytes.len() {
            rest.push_str(&text[at..]);
            break;
        }
        let mut end = start;
        while end < bytes.len() && bytes[end] != b'=' && !bytes[end].is_ascii_whitespace() {
            end += 1;
        }
        let key = &text[start..end];
        let equals = skip_space(end);
        if bytes.get(equals) != Some(&b'=') {
            return Err(config_error(format!("'{key}' has no '=' and value")));
        }
        let (value, after) = read_value(text, skip_space(equals + 1))
            .ok_or_else(|| config_error(format!("the value of '{key}' has no closing quote")))?;
        if !parsed.take(key, value) {
            rest.push_str(&text[at..after]);
        }
        at = after;
    }
    parsed.rest = rest;
    Ok(parsed)
}

/// One value at `at`: quoted (`'…'`, backslash escapes) or bare up to whitespace. Returns the
/// value and where it ended; `None` for an unclosed quote.
fn read_value(text: &str, mut at: usize) -> Option<(String, usize)> {
    let bytes = text.as_bytes();
    let mut value = Vec::new();
    let quoted = bytes.get(at) == Some(&b'\'');
    if quoted {
        at += 1;
    }
    loop {
        match bytes.get(at) {
            None if quoted => return None,
            None => break,
            Some(b'\'') if quoted => {
                at += 1;
                break;
            }
            Some(byte) if !quoted && byte.is_ascii_whitespace() => break,
            Some(b'\\') if at + 1 < bytes.len() => {
                value.push(bytes[at + 1]);
                at += 2;
            }
            Some(&byte) => {
                value.push(byte);
                at += 1;
            }
        }
    }
    Some((String::from_utf8_lossy(&value).into_owned(), at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_strings_lose_only_their_tls_parameters() {
        let parsed = split(
            "host=db port=5432 sslmode = verify-full sslrootcert='/etc/my ca.pem' \
             options='-c search_path=a' application_name=x",
        )
        .unwrap();
        assert_eq!(parsed.sslmode.as_deref(), Some("verify-full"));
        assert_eq!(parsed.sslrootcert.as_deref(), Some("/etc/my ca.pem"));
        assert_eq!(
            parsed.rest,
            "host=db port=5432 options='-c search_path=a' application_name=x"
        );
        postgres::Config::from_str(&parsed.rest).expect("the rest still parses");
    }

    #[test]
    fn key_value_escapes_are_decoded() {
        let parsed = split(r"sslrootcert='/a\'b\\c' host=h").unwrap();
        assert_eq!(parsed.sslrootcert.as_deref(), Some(r"/a'b\c"));
        assert_eq!(parsed.rest, " host=h");
    }

    #[test]
    fn urls_lose_only_their_tls_parameters_and_values_are_percent_decoded() {
        let parsed = split(
            "postgresql://u:p%40ss@db:5432/app?sslmode=verify-ca&application_name=x&\
             sslrootcert=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(parsed.sslmode.as_deref(), Some("verify-ca"));
        assert_eq!(parsed.sslrootcert.as_deref(), Some("/etc/ca.pem"));
        assert_eq!(
            parsed.rest,
            "postgresql://u:p%40ss@db:5432/app?application_name=x"
        );
        let only = split("postgres://db/app?sslmode=require").unwrap();
        assert_eq!(only.rest, "postgres://db/app");
    }

    #[test]
    fn malformed_strings_are_refused_with_what_is_wrong() {
        let unclosed = split("host=h sslrootcert='/etc/ca.pem").unwrap_err();
        assert!(unclosed.to_string().contains("closing quote"), "{unclosed}");
        let bare = split("host=h sslmode").unwrap_err();
        assert!(bare.to_string().contains("'sslmode' has no '='"), "{bare}");
    }

    #[test]
    fn unknown_sslmode_names_the_choices() {
        let Err(error) = configure("host=h sslmode=verify") else {
            panic!("sslmode=verify was accepted");
        };
        assert!(
            error.to_string().contains("verify-ca, verify-full"),
            "{error}"
        );
    }

    #[test]
    fn client_certificates_are_refused_not_ignored() {
        let Err(error) = configure("host=h sslcert=/c.pem sslkey=/k.pem") else {
            panic!("client certificates were silently ignored");
        };
        assert!(error.to_string().contains("not supported"), "{error}");
    }

    #[test]
    fn a_missing_or_empty_root_file_is_a_clear_error() {
        let Err(missing) = configure("host=h sslmode=verify-full sslrootcert=/nonexistent/ca.pem")
        else {
            panic!("a missing root file was accepted");
        };
        assert!(
            missing.to_string().contains("/nonexistent/ca.pem"),
            "{missing}"
        );
        let empty = tempfile::NamedTempFile::new().unwrap();
        let url = format!(
            "host=h sslmode=verify-ca sslrootcert={}",
            empty.path().display()
        );
        let Err(error) = configure(&url) else {
            panic!("an empty root file was accepted");
        };
        assert!(
            error.to_string().contains("no usable PEM certificate"),
            "{error}"
        );
    }

    #[test]
    fn modes_map_to_what_the_driver_enforces() {
        let mode = |url: &str| {
            configure(url)
                .map(|(config, _)| config.get_ssl_mode())
                .unwrap()
        };
        assert_eq!(mode("host=h"), SslMode::Prefer);
        assert_eq!(mode("host=h sslmode=disable"), SslMode::Disable);
        assert_eq!(mode("host=h sslmode=allow"), SslMode::Prefer);
        assert_eq!(mode("host=h sslmode=require"), SslMode::Require);
        assert_eq!(
            mode("host=/var/run/postgresql sslmode=require"),
            SslMode::Disable
        );
    }

    /// Against the test PostgreSQL with TLS on (the throwaway server has it on, with a
    /// certificate for `localhost`), reached as `localhost` at 127.0.0.1 so the certificate's
    /// name can match. Each test gets a schema and finds its store's connections by their
    /// `application_name`.
    mod server {
        use std::sync::Arc;

        use crate::{PgOptions, PgStore, Store, pg::testing::TestSchema};

        struct Local {
            schema: TestSchema,
            certificate: String,
        }

        fn local(prefix: &str) -> Local {
            let schema = TestSchema::create(prefix);
            let ssl = schema.query_text("SHOW ssl");
            assert_eq!(
                ssl.as_deref(),
                Some("on"),
                "these tests need PostgreSQL with ssl=on (the throwaway server has it; a \
                 FLOTILLA_TEST_POSTGRES server must too)"
            );
            let file = schema
                .query_text("SHOW ssl_cert_file")
                .expect("ssl_cert_file");
            let certificate = if file.starts_with('/') {
                file
            } else {
                let data = schema
                    .query_text("SHOW data_directory")
                    .expect("data_directory");
                format!("{data}/{file}")
            };
            Local {
                schema,
                certificate,
            }
        }

        impl Local {
            fn url(&self, host: &str, tls: &str) -> String {
                let name = &self.schema.name;
                let port = crate::pg::testing::server_value("port").unwrap_or("5432".into());
                format!(
                    "host={host} hostaddr=127.0.0.1 port={port} user=postgres dbname=postgres \
                     options='-c search_path={name}' application_name={name} {tls}"
                )
            }

            /// Opens a store, writes and reads through it, and says whether every one of its
            /// connections is encrypted.
            fn store_encrypted(&self, url: &str) -> bool {
                let store: Arc<dyn Store> =
                    Arc::new(PgStore::open(url, PgOptions::default()).expect("open"));
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                let revision = runtime
                    .block_on(store.commit(vec![crate::Op::Put {
                        kind: "K".into(),
                        name: "a".into(),
                        doc: b"{}".to_vec(),
                    }]))
                    .expect("commit");
                assert_eq!(store.load().expect("load").revision, revision);
                let answer = self
                    .schema
                    .query_text(&format!(
                        "SELECT count(*)::text || ' ' || bool_and(s.ssl)::text \
                         FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
                         WHERE a.application_name = '{}'",
                        self.schema.name
                    ))
                    .expect("pg_stat_ssl row");
                let (count, all) = answer.split_once(' ').expect("count and flag");
                assert!(
                    count.parse::<u32>().unwrap() >= 2,
                    "writer and readers: {answer}"
                );
                all == "true"
            }

            fn open_error(&self, url: &str) -> String {
                match PgStore::open(url, PgOptions::default()) {
                    Ok(_) => panic!("opened: {url}"),
                    Err(error) => error.to_string(),
                }
            }
        }

        #[test]
        fn sslmode_require_encrypts_every_store_connection() {
            let local = local("tls_require");
            assert!(local.store_encrypted(&local.url("127.0.0.1", "sslmode=require")));
        }

        #[test]
        fn sslmode_disable_keeps_every_store_connection_plain() {
            let local = local("tls_disable");
            assert!(!local.store_encrypted(&local.url("127.0.0.1", "sslmode=disable")));
        }

        #[test]
        fn verify_full_accepts_the_servers_certificate_by_its_name() {
            let local = local("tls_full");
            let tls = format!("sslmode=verify-full sslrootcert={}", local.certificate);
            assert!(local.store_encrypted(&local.url("localhost", &tls)));
        }

        #[test]
        fn verify_full_refuses_a_host_the_certificate_does_not_name() {
            let local = local("tls_name");
            let tls = format!("sslmode=verify-full sslrootcert={}", local.certificate);
            let error = local.open_error(&local.url("127.0.0.1", &tls));
            assert!(error.contains("not valid for name"), "{error}");
        }

        #[test]
        fn verify_ca_checks_the_chain_but_not_the_name() {
            let local = local("tls_ca");
            let tls = format!("sslmode=verify-ca sslrootcert={}", local.certificate);
            assert!(local.store_encrypted(&local.url("127.0.0.1", &tls)));
        }

        #[test]
        fn verify_full_refuses_a_certificate_no_trusted_root_signed() {
            let local = local("tls_issuer");
            // Trusting some other certificate must not make the server's trusted.
            let dir = tempfile::tempdir().unwrap();
            let other = dir.path().join("other.pem");
            let made = std::process::Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                ])
                .args([
                    "-nodes",
                    "-days",
                    "1",
                    "-subj",
                    "/CN=flotilla test stranger",
                    "-keyout",
                ])
                .arg(dir.path().join("other.key"))
                .arg("-out")
                .arg(&other)
                .output()
                .expect("the openssl CLI makes this test's stranger certificate");
            assert!(
                made.status.success(),
                "{}",
                String::from_utf8_lossy(&made.stderr)
            );
            let tls = format!("sslmode=verify-full sslrootcert={}", other.display());
            let error = local.open_error(&local.url("localhost", &tls));
            assert!(
                error.contains("UnknownIssuer") || error.contains("BadSignature"),
                "{error}"
            );
        }
    }
}
