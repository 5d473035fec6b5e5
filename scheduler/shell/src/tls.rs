//! Cluster PKI and the rustls configurations of the QUIC transport.
//!
//! Each cluster has its own certificate authority (`ca.pem`, `ca.key`), created once by
//! [`create_ca`]. Every member gets a certificate from it with [`issue`]: a sovrad replica
//! as [`Role::Node`], the CLI as [`Role::Client`], a node's agent as [`Role::Agent`] (which
//! may speak only for its own node). Both ends of every
//! connection present a certificate and verify the other's against the cluster CA (mutual
//! TLS); there is no other authentication.
//!
//! The role is carried twice in each certificate:
//!
//! - for people (`openssl x509 -text`): Subject CN `sovrad-node-<id>`, `sovra-client-<user>`
//!   or `sovra-agent-<node>`, and Subject O = the cluster name;
//! - for programs: a URI SAN `sovra://<cluster>/node/<id>`, `sovra://<cluster>/client/<user>`
//!   or `sovra://<cluster>/agent/<node>` (the CA has `sovra://<cluster>/ca`). [`peer_role`]
//!   reads this one, through `webpki`, which rustls already uses to verify the chain; reading
//!   the CN would need a full X.509 parser (`x509-parser`), which this keeps out of the build.
//!
//! Server certificates also carry the SANs `localhost`, `127.0.0.1` and `::1`, plus whatever
//! the operator passes to [`issue`]; the transport dials peers by IP address, so a node's
//! certificate must name every address it is reached at.
//!
//! All configurations use the *ring* provider explicitly, TLS 1.3 only (QUIC requires it),
//! the ALPN protocol [`ALPN`], and no session resumption.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The ALPN protocol id of sovra's QUIC connections (both peer and client traffic).
pub const ALPN: &[u8] = b"sovra/1";

/// How long a cluster CA is valid.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long a node or client certificate is valid. There is no rotation yet: re-run [`issue`].
pub const LEAF_VALIDITY: Duration = Duration::from_secs(2 * 365 * 24 * 3600);
/// Certificates are back-dated by this much, to tolerate clock skew between machines.
const CLOCK_SKEW: Duration = Duration::from_secs(3600);

/// The longest cluster, user or file name accepted; keeps every CN within X.509's 64 chars.
pub const NAME_LEN_MAX: usize = 48;

const CA_CERT_FILE: &str = "ca.pem";
const CA_KEY_FILE: &str = "ca.key";
const URI_SCHEME: &str = "sovra://";

/// Who a certificate belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Role {
    /// A sovrad replica with its Raft node id.
    Node {
        /// The Raft node id.
        id: u64,
    },
    /// A user of the cluster: the CLI.
    Client {
        /// The user name, `[A-Za-z0-9._-]`.
        user: String,
    },
    /// The agent of one GPU node: it may register, heartbeat and report jobs for that node
    /// only.
    Agent {
        /// The node's name in the inventory, `[A-Za-z0-9._-]`.
        node: String,
    },
}

impl Role {
    fn common_name(&self) -> String {
        match self {
            Role::Node { id } => format!("sovrad-node-{id}"),
            Role::Client { user } => format!("sovra-client-{user}"),
            Role::Agent { node } => format!("sovra-agent-{node}"),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Node { id } => write!(f, "node {id}"),
            Role::Client { user } => write!(f, "client {user}"),
            Role::Agent { node } => write!(f, "agent of node {node}"),
        }
    }
}

/// What a sovra certificate's URI SAN names: the CA itself or a member.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Subject {
    Ca,
    Member(Role),
}

impl Subject {
    fn uri(&self, cluster: &str) -> String {
        match self {
            Subject::Ca => format!("{URI_SCHEME}{cluster}/ca"),
            Subject::Member(Role::Node { id }) => format!("{URI_SCHEME}{cluster}/node/{id}"),
            Subject::Member(Role::Client { user }) => {
                format!("{URI_SCHEME}{cluster}/client/{user}")
            }
            Subject::Member(Role::Agent { node }) => {
                format!("{URI_SCHEME}{cluster}/agent/{node}")
            }
        }
    }

    /// Parses `sovra://<cluster>/<rest>`; `None` for anything not written by [`Subject::uri`].
    fn parse_uri(uri: &str) -> Option<(String, Subject)> {
        let rest = uri.strip_prefix(URI_SCHEME)?;
        let (cluster, path) = rest.split_once('/')?;
        if !valid_name(cluster) {
            return None;
        }
        let subject = match path.split_once('/') {
            None if path == "ca" => Subject::Ca,
            Some(("node", id)) => {
                let parsed: u64 = id.parse().ok()?;
                // Only the canonical decimal form: no `+`, no leading zeros.
                if parsed.to_string() != id {
                    return None;
                }
                Subject::Member(Role::Node { id: parsed })
            }
            Some(("client", user)) if valid_name(user) => Subject::Member(Role::Client {
                user: user.to_string(),
            }),
            Some(("agent", node)) if valid_name(node) => Subject::Member(Role::Agent {
                node: node.to_string(),
            }),
            _ => return None,
        };
        Some((cluster.to_string(), subject))
    }
}

/// Failures of the PKI and of building TLS configurations. Messages name the file involved.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A cluster, user or file name outside the accepted alphabet.
    #[error(
        "invalid {what} {value:?}: use 1 to {NAME_LEN_MAX} characters from [A-Za-z0-9._-], \
         starting with a letter or digit"
    )]
    InvalidName {
        /// Which name: "cluster name", "user name", "file name".
        what: &'static str,
        /// The rejected value.
        value: String,
    },
    /// A subject alternative name that cannot be put in a certificate.
    #[error("invalid subject alternative name {0:?}: not an ip address or ascii dns name")]
    InvalidSan(String),
    /// A file name that would overwrite the cluster CA.
    #[error("the name {0:?} is reserved for the cluster ca")]
    ReservedName(String),
    /// [`create_ca`] found an existing CA.
    #[error("{}: already exists, refusing to overwrite a cluster ca", path.display())]
    CaExists {
        /// The existing file.
        path: PathBuf,
    },
    /// A file could not be read (missing, permissions, ...).
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The io error.
        source: io::Error,
    },
    /// A file or directory could not be written.
    #[error("writing {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The io error.
        source: io::Error,
    },
    /// A file holds no usable PEM section of the expected kind.
    #[error("{}: bad pem: {detail}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A certificate that is not a sovra certificate, or not parseable X.509.
    #[error("{}: unusable certificate: {detail}", path.display())]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A private key that cannot be used for signing.
    #[error("{}: unusable private key: {detail}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A key file whose key is not the one certified by the certificate file.
    #[error("{}: private key does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rcgen failed to build a certificate.
    #[error("generating certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls or quinn refused the configuration.
    #[error("building tls config: {0}")]
    Config(String),
    /// The peer of a connection presented no certificate.
    #[error("peer presented no certificate")]
    NoPeerCertificate,
    /// The peer's certificate is verified but carries no sovra role.
    #[error("peer certificate carries no sovra role: {0}")]
    PeerCertificate(String),
}

/// The cluster's CA certificate: what every member trusts. Holds no private key.
#[derive(Debug, Clone)]
pub struct ClusterCa {
    cluster: String,
    cert: CertificateDer<'static>,
}

impl ClusterCa {
    /// The cluster name the CA was created for.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The CA certificate.
    pub fn cert(&self) -> &CertificateDer<'static> {
        &self.cert
    }
}

/// The CA certificate with its private key: only the operator's machine holds one.
pub struct CaIssuer {
    ca: ClusterCa,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for CaIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaIssuer")
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

impl CaIssuer {
    /// Loads `ca.pem` and `ca.key` from `dir`, checking that they belong together and that
    /// the certificate is a sovra cluster CA.
    pub fn load(dir: &Path) -> Result<CaIssuer, TlsError> {
        let ca = load_ca(dir)?;
        let key_path = dir.join(CA_KEY_FILE);
        let key_pem = read_string(&key_path)?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| TlsError::Key {
            path: key_path.clone(),
            detail: e.to_string(),
        })?;

        let cert_path = dir.join(CA_CERT_FILE);
        let stored = parse_cert(&ca.cert, &cert_path)?;
        if key.subject_public_key_info() != stored.subject_public_key_info().as_ref() {
            return Err(TlsError::KeyMismatch {
                cert: cert_path,
                key: key_path,
            });
        }
        // rcgen cannot parse a certificate back into parameters; rebuild them from the
        // cluster name and check that they name the same subject, byte for byte, since
        // that is what issued certificates must carry as their issuer.
        let params = ca_params(&ca.cluster)?;
        let rebuilt_der = params.self_signed(&key)?.der().clone();
        let rebuilt = parse_cert(&rebuilt_der, &cert_path)?;
        if rebuilt.subject() != stored.subject() {
            return Err(TlsError::Certificate {
                path: cert_path,
                detail: "subject differs from the one sovra writes for this cluster".into(),
            });
        }
        Ok(CaIssuer {
            ca,
            issuer: Issuer::new(params, key),
        })
    }

    /// The public half, as members load it with [`load_ca`].
    pub fn ca(&self) -> &ClusterCa {
        &self.ca
    }
}

/// A member's certificate chain and private key.
pub struct Identity {
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Identity {
    /// The private key's DER bytes (to derive per-node secrets, never sent anywhere).
    pub(crate) fn key_der(&self) -> &[u8] {
        self.key.secret_der()
    }
}

impl Clone for Identity {
    fn clone(&self) -> Identity {
        Identity {
            certs: self.certs.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("role", &self.role().ok())
            .field("certs", &self.certs.len())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Loads `<name>.pem` (the chain, leaf first) and `<name>.key` from `dir`, and checks
    /// that the key is the one the leaf certifies.
    pub fn load(dir: &Path, name: &str) -> Result<Identity, TlsError> {
        check_name("file name", name)?;
        let cert_path = dir.join(format!("{name}.pem"));
        let key_path = dir.join(format!("{name}.key"));

        let cert_pem = fs::read(&cert_path).map_err(|source| TlsError::Read {
            path: cert_path.clone(),
            source,
        })?;
        let certs = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Pem {
                path: cert_path.clone(),
                detail: e.to_string(),
            })?;
        let Some(leaf) = certs.first() else {
            return Err(TlsError::Pem {
                path: cert_path,
                detail: "no CERTIFICATE section".into(),
            });
        };
        parse_cert(leaf, &cert_path)?;

        let key_pem = fs::read(&key_path).map_err(|source| TlsError::Read {
            path: key_path.clone(),
            source,
        })?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Pem {
            path: key_path.clone(),
            detail: e.to_string(),
        })?;

        let provider = provider();
        let signing_key = provider
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|e| TlsError::Key {
                path: key_path.clone(),
                detail: e.to_string(),
            })?;
        let certified = rustls::sign::CertifiedKey::new(certs.clone(), signing_key);
        match certified.keys_match() {
            Ok(()) => {}
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                return Err(TlsError::KeyMismatch {
                    cert: cert_path,
                    key: key_path,
                });
            }
            Err(e) => {
                return Err(TlsError::Key {
                    path: key_path,
                    detail: e.to_string(),
                });
            }
        }
        Ok(Identity { certs, key })
    }

    /// The role named by the leaf certificate.
    pub fn role(&self) -> Result<Role, TlsError> {
        self.subject().map(|(_, role)| role)
    }

    /// The cluster named by the leaf certificate.
    pub fn cluster(&self) -> Result<String, TlsError> {
        self.subject().map(|(cluster, _)| cluster)
    }

    /// The certificate chain, leaf first.
    pub fn certs(&self) -> &[CertificateDer<'static>] {
        &self.certs
    }

    fn subject(&self) -> Result<(String, Role), TlsError> {
        let leaf = self.certs.first().ok_or(TlsError::NoPeerCertificate)?;
        cert_subject(leaf)
    }
}

/// Creates a cluster CA in `dir` (created if missing): `ca.pem`, and `ca.key` with mode 0600.
/// Refuses to overwrite an existing CA.
pub fn create_ca(dir: &Path, cluster: &str) -> Result<CaIssuer, TlsError> {
    check_name("cluster name", cluster)?;
    let cert_path = dir.join(CA_CERT_FILE);
    let key_path = dir.join(CA_KEY_FILE);
    for path in [&cert_path, &key_path] {
        if path.exists() {
            return Err(TlsError::CaExists { path: path.clone() });
        }
    }
    fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })?;

    let key = KeyPair::generate()?;
    let params = ca_params(cluster)?;
    let cert = params.self_signed(&key)?;
    write_file(
        &key_path,
        key.serialize_pem().as_bytes(),
        FileKind::NewSecret,
    )?;
    write_file(&cert_path, cert.pem().as_bytes(), FileKind::NewPublic)?;

    let ca = ClusterCa {
        cluster: cluster.to_string(),
        cert: cert.der().clone(),
    };
    Ok(CaIssuer {
        ca,
        issuer: Issuer::new(params, key),
    })
}

/// Issues a certificate for `role` signed by `ca`, and writes it to `dir` as `<name>.pem` and
/// `<name>.key` (mode 0600), replacing earlier files of that name.
///
/// `sans` are added to `localhost`, `127.0.0.1` and `::1`: IP addresses or DNS names.
pub fn issue(
    dir: &Path,
    ca: &CaIssuer,
    role: &Role,
    name: &str,
    sans: &[String],
) -> Result<Identity, TlsError> {
    check_name("file name", name)?;
    if name == "ca" {
        return Err(TlsError::ReservedName(name.to_string()));
    }
    match role {
        Role::Client { user } => check_name("user name", user)?,
        Role::Agent { node } => check_name("node name", node)?,
        Role::Node { .. } => {}
    }
    let cluster = ca.ca.cluster();

    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(&role.common_name(), cluster);
    let mut san_types = vec![
        SanType::DnsName("localhost".try_into()?),
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ];
    for san in sans {
        let san_type = match san.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                san.as_str()
                    .try_into()
                    .map_err(|_| TlsError::InvalidSan(san.clone()))?,
            ),
        };
        if !san_types.contains(&san_type) {
            san_types.push(san_type);
        }
    }
    san_types.push(SanType::URI(
        Subject::Member(role.clone()).uri(cluster).try_into()?,
    ));
    params.subject_alt_names = san_types;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = match role {
        // A replica is a server to clients and peers, and a client when it dials peers.
        Role::Node { .. } => {
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ]
        }
        Role::Client { .. } | Role::Agent { .. } => vec![ExtendedKeyUsagePurpose::ClientAuth],
    };
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, LEAF_VALIDITY);

    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca.issuer)?;
    write_file(
        &dir.join(format!("{name}.key")),
        key.serialize_pem().as_bytes(),
        FileKind::Secret,
    )?;
    write_file(
        &dir.join(format!("{name}.pem")),
        cert.pem().as_bytes(),
        FileKind::Public,
    )?;

    let key = PrivateKeyDer::try_from(key.serialize_der())
        .map_err(|e| TlsError::Config(format!("re-reading generated key: {e}")))?;
    Ok(Identity {
        certs: vec![cert.der().clone()],
        key,
    })
}

/// Loads the cluster CA certificate `ca.pem` from `dir`.
pub fn load_ca(dir: &Path) -> Result<ClusterCa, TlsError> {
    let path = dir.join(CA_CERT_FILE);
    let pem = fs::read(&path).map_err(|source| TlsError::Read {
        path: path.clone(),
        source,
    })?;
    let cert = CertificateDer::from_pem_slice(&pem).map_err(|e| TlsError::Pem {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    let parsed = parse_cert(&cert, &path)?;
    let cluster = parsed
        .valid_uri_names()
        .find_map(|uri| match Subject::parse_uri(uri) {
            Some((cluster, Subject::Ca)) => Some(cluster),
            _ => None,
        })
        .ok_or_else(|| TlsError::Certificate {
            path: path.clone(),
            detail: format!("not a sovra cluster ca (no {URI_SCHEME}<cluster>/ca uri)"),
        })?;
    Ok(ClusterCa { cluster, cert })
}

/// The QUIC server configuration of a replica: presents `identity`, and requires every
/// client to present a certificate that chains to `ca`.
pub fn server_config(identity: &Identity, ca: &ClusterCa) -> Result<quinn::ServerConfig, TlsError> {
    let provider = Arc::new(provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(root_store(ca)?),
        provider.clone(),
    )
    .build()
    .map_err(|e| TlsError::Config(format!("client verifier: {e}")))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_error)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.certs.clone(), identity.key.clone_key())
        .map_err(config_error)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    // No session resumption: every connection verifies the full chain (and its expiry).
    tls.send_tls13_tickets = 0;
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(config_error)?;
    Ok(quinn::ServerConfig::with_crypto(Arc::new(quic)))
}

/// The QUIC client configuration: verifies the server against `ca` and presents `identity`.
pub fn client_config(identity: &Identity, ca: &ClusterCa) -> Result<quinn::ClientConfig, TlsError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_error)?
        .with_root_certificates(root_store(ca)?)
        .with_client_auth_cert(identity.certs.clone(), identity.key.clone_key())
        .map_err(config_error)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.resumption = rustls::client::Resumption::disabled();
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(config_error)?;
    Ok(quinn::ClientConfig::new(Arc::new(quic)))
}

/// The role of the peer of an established connection, from its verified certificate.
///
/// The handshake has already checked the chain against the cluster CA; this only reads the
/// role the CA signed into the leaf.
pub fn peer_role(connection: &quinn::Connection) -> Result<Role, TlsError> {
    let identity = connection
        .peer_identity()
        .ok_or(TlsError::NoPeerCertificate)?;
    let certs = identity
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| TlsError::NoPeerCertificate)?;
    let leaf = certs.first().ok_or(TlsError::NoPeerCertificate)?;
    cert_subject(leaf).map(|(_, role)| role)
}

/// The cluster and member role named by a sovra leaf certificate.
fn cert_subject(cert: &CertificateDer<'_>) -> Result<(String, Role), TlsError> {
    let parsed = webpki::EndEntityCert::try_from(cert)
        .map_err(|e| TlsError::PeerCertificate(format!("unparseable: {e}")))?;
    let found = parsed
        .valid_uri_names()
        .find_map(|uri| match Subject::parse_uri(uri) {
            Some((cluster, Subject::Member(role))) => Some((cluster, role)),
            _ => None,
        });
    found.ok_or_else(|| {
        TlsError::PeerCertificate(format!("no {URI_SCHEME}<cluster>/node|client/.. uri"))
    })
}

fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

fn root_store(ca: &ClusterCa) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca.cert.clone())
        .map_err(|e| TlsError::Config(format!("ca certificate: {e}")))?;
    Ok(roots)
}

fn config_error(e: impl fmt::Display) -> TlsError {
    TlsError::Config(e.to_string())
}

fn parse_cert<'a>(
    cert: &'a CertificateDer<'a>,
    path: &Path,
) -> Result<webpki::EndEntityCert<'a>, TlsError> {
    webpki::EndEntityCert::try_from(cert).map_err(|e| TlsError::Certificate {
        path: path.to_path_buf(),
        detail: format!("not parseable x.509: {e}"),
    })
}

fn ca_params(cluster: &str) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(&format!("sovra-ca-{cluster}"), cluster);
    params.subject_alt_names = vec![SanType::URI(Subject::Ca.uri(cluster).try_into()?)];
    // Path length 0: the CA signs members directly, never an intermediate.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, CA_VALIDITY);
    Ok(params)
}

fn distinguished_name(common_name: &str, cluster: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name.push(DnType::OrganizationName, cluster);
    name
}

fn set_validity(params: &mut CertificateParams, validity: Duration) {
    // Before 1970 only with a broken clock; then the certificate starts at the epoch.
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + since_epoch.saturating_sub(CLOCK_SKEW);
    params.not_after = epoch + since_epoch + validity;
}

fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= NAME_LEN_MAX
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn check_name(what: &'static str, name: &str) -> Result<(), TlsError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(TlsError::InvalidName {
            what,
            value: name.to_string(),
        })
    }
}

fn read_string(path: &Path) -> Result<String, TlsError> {
    fs::read_to_string(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FileKind {
    /// Fails if the file exists; mode 0600.
    NewSecret,
    /// Fails if the file exists.
    NewPublic,
    /// Replaces the file; mode 0600.
    Secret,
    /// Replaces the file.
    Public,
}

fn write_file(path: &Path, contents: &[u8], kind: FileKind) -> Result<(), TlsError> {
    let secret = matches!(kind, FileKind::NewSecret | FileKind::Secret);
    let new = matches!(kind, FileKind::NewSecret | FileKind::NewPublic);
    let write = || -> io::Result<()> {
        let mut options = fs::OpenOptions::new();
        options.write(true);
        if new {
            options.create_new(true);
        } else {
            options.create(true).truncate(true);
        }
        if secret {
            options.mode(0o600);
        }
        let mut file = options.open(path)?;
        if secret {
            // `mode` applies only to new files; tighten one that existed already.
            file.set_permissions(fs::Permissions::from_mode(0o600))?;
        }
        file.write_all(contents)?;
        file.sync_all()
    };
    write().map_err(|source| match source.kind() {
        io::ErrorKind::AlreadyExists => TlsError::CaExists {
            path: path.to_path_buf(),
        },
        _ => TlsError::Write {
            path: path.to_path_buf(),
            source,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_dir() -> (tempfile::TempDir, CaIssuer) {
        let dir = tempfile::tempdir().unwrap();
        let ca = create_ca(dir.path(), "test-cluster").unwrap();
        (dir, ca)
    }

    /// Verifies `identity`'s leaf against `ca` for client authentication, as rustls would.
    fn verify_client(identity: &Identity, ca: &ClusterCa) -> Result<(), webpki::Error> {
        let anchor = webpki::anchor_from_trusted_cert(ca.cert())?;
        let leaf = webpki::EndEntityCert::try_from(&identity.certs()[0])?;
        let now = rustls::pki_types::UnixTime::now();
        let algorithms = provider().signature_verification_algorithms.all;
        leaf.verify_for_usage(
            algorithms,
            &[anchor],
            &[],
            now,
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .map(|_| ())
    }

    #[test]
    fn create_ca_writes_files_with_secret_key_mode() {
        let (dir, ca) = ca_dir();
        let mode = fs::metadata(dir.path().join("ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let loaded = load_ca(dir.path()).unwrap();
        assert_eq!(loaded.cluster(), "test-cluster");
        assert_eq!(loaded.cert(), ca.ca().cert());

        let err = create_ca(dir.path(), "test-cluster")
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("ca.pem: already exists, refusing to overwrite a cluster ca"));
    }

    #[test]
    fn issued_identities_load_and_carry_their_role() {
        let (dir, ca) = ca_dir();
        let sans = ["10.0.0.7".to_string(), "node7.example".to_string()];
        let issued = issue(dir.path(), &ca, &Role::Node { id: 7 }, "node-7", &sans).unwrap();
        let loaded = Identity::load(dir.path(), "node-7").unwrap();
        assert_eq!(loaded.certs(), issued.certs());
        assert_eq!(loaded.role().unwrap(), Role::Node { id: 7 });
        assert_eq!(loaded.cluster().unwrap(), "test-cluster");
        verify_client(&loaded, ca.ca()).unwrap();
        let mode = fs::metadata(dir.path().join("node-7.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        let leaf = webpki::EndEntityCert::try_from(&loaded.certs()[0]).unwrap();
        let dns: Vec<&str> = leaf.valid_dns_names().collect();
        assert_eq!(dns, ["localhost", "node7.example"]);
        let name = rustls::pki_types::ServerName::try_from("10.0.0.7").unwrap();
        leaf.verify_is_valid_for_subject_name(&name).unwrap();
        let name = rustls::pki_types::ServerName::try_from("::1").unwrap();
        leaf.verify_is_valid_for_subject_name(&name).unwrap();

        let user = Role::Client {
            user: "alice".into(),
        };
        issue(dir.path(), &ca, &user, "alice", &[]).unwrap();
        let alice = Identity::load(dir.path(), "alice").unwrap();
        assert_eq!(alice.role().unwrap(), user);
        verify_client(&alice, ca.ca()).unwrap();
    }

    #[test]
    fn reloaded_ca_issues_certificates_the_original_ca_verifies() {
        let (dir, ca) = ca_dir();
        let reloaded = CaIssuer::load(dir.path()).unwrap();
        assert_eq!(reloaded.ca().cluster(), "test-cluster");
        let role = Role::Node { id: 2 };
        let identity = issue(dir.path(), &reloaded, &role, "node-2", &[]).unwrap();
        verify_client(&identity, ca.ca()).unwrap();

        let other_dir = tempfile::tempdir().unwrap();
        let other_ca = create_ca(other_dir.path(), "other-cluster").unwrap();
        let stranger = issue(other_dir.path(), &other_ca, &role, "node-2", &[]).unwrap();
        assert_eq!(
            verify_client(&stranger, ca.ca()).unwrap_err(),
            webpki::Error::UnknownIssuer
        );
        // Same cluster name, different CA: the names match, the signature does not.
        let (same_name_dir, same_name_ca) = ca_dir();
        let stranger = issue(same_name_dir.path(), &same_name_ca, &role, "node-2", &[]).unwrap();
        assert_eq!(
            verify_client(&stranger, ca.ca()).unwrap_err(),
            webpki::Error::InvalidSignatureForPublicKey
        );
    }

    #[test]
    fn load_errors_name_the_file() {
        let (dir, ca) = ca_dir();
        let path = dir.path().display().to_string();
        let check = |result: Result<Identity, TlsError>, expect: &str| {
            let message = result.unwrap_err().to_string().replace(&path, "$DIR");
            assert_eq!(message, expect);
        };
        check(
            Identity::load(dir.path(), "missing"),
            "reading $DIR/missing.pem: No such file or directory (os error 2)",
        );

        issue(dir.path(), &ca, &Role::Node { id: 1 }, "node-1", &[]).unwrap();
        issue(dir.path(), &ca, &Role::Node { id: 2 }, "node-2", &[]).unwrap();
        fs::copy(dir.path().join("node-2.key"), dir.path().join("node-1.key")).unwrap();
        check(
            Identity::load(dir.path(), "node-1"),
            "$DIR/node-1.key: private key does not match the certificate in $DIR/node-1.pem",
        );

        fs::write(dir.path().join("node-2.pem"), "not pem at all\n").unwrap();
        check(
            Identity::load(dir.path(), "node-2"),
            "$DIR/node-2.pem: bad pem: no CERTIFICATE section",
        );
        fs::write(
            dir.path().join("node-2.pem"),
            "-----BEGIN CERTIFICATE-----\nAAAA\n",
        )
        .unwrap();
        let message = Identity::load(dir.path(), "node-2")
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with(&format!("{path}/node-2.pem: bad pem: ")),
            "{message}"
        );
        fs::write(
            dir.path().join("node-2.pem"),
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let message = Identity::load(dir.path(), "node-2")
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with(&format!("{path}/node-2.pem: unusable certificate: ")),
            "{message}"
        );

        fs::remove_file(dir.path().join("ca.key")).unwrap();
        let message = CaIssuer::load(dir.path()).unwrap_err().to_string();
        assert_eq!(
            message.replace(&path, "$DIR"),
            "reading $DIR/ca.key: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn ca_key_must_match_ca_cert() {
        let (dir, _ca) = ca_dir();
        let (other_dir, _other) = ca_dir();
        fs::copy(other_dir.path().join("ca.key"), dir.path().join("ca.key")).unwrap();
        let message = CaIssuer::load(dir.path()).unwrap_err().to_string();
        assert_eq!(
            message.replace(&dir.path().display().to_string(), "$DIR"),
            "$DIR/ca.key: private key does not match the certificate in $DIR/ca.pem"
        );
    }

    #[test]
    fn names_are_checked() {
        let (dir, ca) = ca_dir();
        let bad_user = Role::Client {
            user: "al/ice".into(),
        };
        let message = issue(dir.path(), &ca, &bad_user, "alice", &[])
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "invalid user name \"al/ice\": use 1 to 48 characters from [A-Za-z0-9._-], \
             starting with a letter or digit"
        );
        let node = Role::Node { id: 1 };
        assert!(matches!(
            issue(dir.path(), &ca, &node, "../node", &[]),
            Err(TlsError::InvalidName {
                what: "file name",
                ..
            })
        ));
        assert!(matches!(
            issue(dir.path(), &ca, &node, "ca", &[]),
            Err(TlsError::ReservedName(_))
        ));
        let sans = ["bad name é".to_string()];
        assert!(matches!(
            issue(dir.path(), &ca, &node, "n", &sans),
            Err(TlsError::InvalidSan(_))
        ));
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            create_ca(empty.path(), ""),
            Err(TlsError::InvalidName { .. })
        ));
    }

    #[test]
    fn role_uris_parse_only_in_canonical_form() {
        let check = |uri: &str| Subject::parse_uri(uri);
        assert_eq!(check("sovra://c/ca"), Some(("c".into(), Subject::Ca)));
        assert_eq!(
            check("sovra://c/node/12"),
            Some(("c".into(), Subject::Member(Role::Node { id: 12 })))
        );
        assert_eq!(
            check("sovra://c/agent/au1-n01"),
            Some((
                "c".into(),
                Subject::Member(Role::Agent {
                    node: "au1-n01".into()
                })
            ))
        );
        assert_eq!(
            check("sovra://c/client/bob"),
            Some((
                "c".into(),
                Subject::Member(Role::Client { user: "bob".into() })
            ))
        );
        for bad in [
            "sovra://c/node/+1",
            "sovra://c/node/01",
            "sovra://c/node/",
            "sovra://c/node/1/x",
            "sovra://c/client/",
            "sovra://c/client/a/b",
            "sovra://c/agent/",
            "sovra://c/agent/a/b",
            "sovra:///ca",
            "https://c/ca",
            "sovra://c/admin/x",
        ] {
            assert_eq!(check(bad), None, "{bad}");
        }
    }

    #[test]
    fn configs_build() {
        let (dir, ca) = ca_dir();
        let identity = issue(dir.path(), &ca, &Role::Node { id: 1 }, "node-1", &[]).unwrap();
        server_config(&identity, ca.ca()).unwrap();
        client_config(&identity, ca.ca()).unwrap();
    }
}
