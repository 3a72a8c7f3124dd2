//! The lab's certificates: a CA of its own, etcd's server and peer certificate, and one client
//! certificate per node and one for the CLI, so that the datastore takes TLS with client
//! certificates on its network address, as a real cluster's etcd does, and a pod that reaches
//! 192.168.10.100:2379 gets nothing without one.
//!
//! For Kubernetes' control plane (`lab up --control-plane kubernetes`) it also makes
//! kube-apiserver's serving certificate, its etcd client certificate, the client certificates of the
//! admin (group `system:masters`), kube-controller-manager and kube-scheduler (the user names
//! Kubernetes' default RBAC binds), and the service-account signing key. They are made in both modes:
//! a few milliseconds, and switching modes then never re-keys a running etcd.
//!
//! Made once per lab, at `lab up`, under the lab's data directory (0700), and kept while the lab
//! lives: a running etcd keeps using them. Each node's processes get only their node's key.

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

use crate::error::LabError;

/// A certificate and its key, as PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Where the lab's certificates live (`<data dir>/pki`).
#[derive(Clone, Debug)]
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Pki { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// etcd's certificate, for clients (server auth) and for its peers (both).
    pub fn etcd(&self) -> CertFiles {
        self.pair("etcd")
    }

    /// A client certificate for `name` (a node, or `admin` for the CLI).
    pub fn client(&self, name: &str) -> CertFiles {
        self.pair(&format!("client-{name}"))
    }

    /// The serving certificate of `node`'s metrics endpoints (its address; server and client
    /// auth), so they take TLS with client certificates as etcd does.
    pub fn server(&self, node: &str) -> CertFiles {
        self.pair(&format!("server-{node}"))
    }

    /// kube-apiserver's serving certificate.
    pub fn kube_apiserver(&self) -> CertFiles {
        self.pair("kube-apiserver")
    }

    /// A client certificate of Kubernetes' control plane: one of [`KUBE_USERS`].
    pub fn kube_user(&self, user: &KubeUser) -> CertFiles {
        self.pair(&format!("kube-{}", user.file))
    }

    /// The key kube-apiserver signs service-account tokens with (PKCS#8), and its public half.
    pub fn service_account_key(&self) -> PathBuf {
        self.dir.join("service-account.key")
    }

    pub fn service_account_public_key(&self) -> PathBuf {
        self.dir.join("service-account.pub")
    }

    fn pair(&self, base: &str) -> CertFiles {
        CertFiles { cert: self.dir.join(format!("{base}.crt")), key: self.dir.join(format!("{base}.key")) }
    }

    /// Makes the CA and every certificate unless all are there already. `etcd_ips` are the
    /// addresses etcd is reached at; `clients` the names that get a client certificate;
    /// `servers` the nodes (and their addresses) that get a serving certificate;
    /// `apiserver_ips` the addresses kube-apiserver is reached at (its node's, and the
    /// `kubernetes` Service's cluster IP).
    pub fn ensure(
        &self,
        etcd_ips: &[Ipv4Addr],
        clients: &[&str],
        servers: &[(&str, Ipv4Addr)],
        apiserver_ips: &[Ipv4Addr],
    ) -> Result<bool, LabError> {
        let mut wanted = vec![self.ca(), self.etcd().cert, self.etcd().key];
        wanted.extend([self.kube_apiserver().cert, self.kube_apiserver().key]);
        wanted.extend([self.service_account_key(), self.service_account_public_key()]);
        for user in KUBE_USERS {
            wanted.extend([self.kube_user(user).cert, self.kube_user(user).key]);
        }
        for c in clients {
            wanted.extend([self.client(c).cert, self.client(c).key]);
        }
        for (node, _) in servers {
            wanted.extend([self.server(node).cert, self.server(node).key]);
        }
        if wanted.iter().all(|p| p.exists()) {
            return Ok(false);
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| LabError::io("create the certificate directory", &self.dir, e))?;
        let (ca, ca_key) = ca()?;
        self.write(&self.ca(), &ca.pem())?;

        let mut names = vec!["localhost".to_string()];
        names.extend(etcd_ips.iter().map(ToString::to_string));
        let ips: Vec<IpAddr> =
            etcd_ips.iter().map(|i| IpAddr::V4(*i)).chain([IpAddr::V4(Ipv4Addr::LOCALHOST)]).collect();
        let usages = [ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let ca = Issuer { cert: &ca, key: &ca_key };
        self.leaf(&self.etcd(), &Subject::named("etcd").at(&ips).for_uses(&usages), &ca)?;
        for c in clients {
            self.leaf(&self.client(c), &Subject::named(c).for_uses(&[ExtendedKeyUsagePurpose::ClientAuth]), &ca)?;
        }
        for (node, ip) in servers {
            let ips = [IpAddr::V4(*ip), IpAddr::V4(Ipv4Addr::LOCALHOST)];
            self.leaf(&self.server(node), &Subject::named(node).at(&ips).for_uses(&usages), &ca)?;
        }

        let ips: Vec<IpAddr> =
            apiserver_ips.iter().map(|i| IpAddr::V4(*i)).chain([IpAddr::V4(Ipv4Addr::LOCALHOST)]).collect();
        let apiserver = Subject {
            dns_names: APISERVER_DNS_NAMES,
            ..Subject::named("kube-apiserver").at(&ips).for_uses(&[ExtendedKeyUsagePurpose::ServerAuth])
        };
        self.leaf(&self.kube_apiserver(), &apiserver, &ca)?;
        for user in KUBE_USERS {
            let subject = Subject {
                organization: user.group,
                ..Subject::named(user.name).for_uses(&[ExtendedKeyUsagePurpose::ClientAuth])
            };
            self.leaf(&self.kube_user(user), &subject, &ca)?;
        }
        let signing = KeyPair::generate().map_err(|e| pki_error("generate the service-account key", e))?;
        self.write(&self.service_account_key(), &signing.serialize_pem())?;
        self.write(&self.service_account_public_key(), &signing.public_key_pem())?;
        Ok(true)
    }

    fn leaf(&self, files: &CertFiles, subject: &Subject<'_>, ca: &Issuer<'_>) -> Result<(), LabError> {
        let key = KeyPair::generate().map_err(|e| pki_error("generate a key", e))?;
        let names = ["localhost"].iter().chain(subject.dns_names).map(ToString::to_string).collect::<Vec<_>>();
        let mut params = CertificateParams::new(names).map_err(|e| pki_error("certificate names", e))?;
        params.distinguished_name.push(DnType::CommonName, subject.common_name);
        if let Some(org) = subject.organization {
            params.distinguished_name.push(DnType::OrganizationName, org);
        }
        params.subject_alt_names.extend(subject.ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = subject.usages.to_vec();
        let cert = params.signed_by(&key, ca.cert, ca.key).map_err(|e| pki_error("sign a certificate", e))?;
        self.write(&files.cert, &cert.pem())?;
        self.write(&files.key, &key.serialize_pem())
    }

    /// Writes a file readable by root only.
    fn write(&self, path: &Path, text: &str) -> Result<(), LabError> {
        use std::io::Write as _;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| LabError::io("write a certificate", path, e))?;
        f.write_all(text.as_bytes()).map_err(|e| LabError::io("write a certificate", path, e))
    }
}

/// A client of Kubernetes' control plane: the file it is kept in, and the user and group its
/// certificate names (Kubernetes takes the CN as the user and O as the group).
#[derive(Debug)]
pub struct KubeUser {
    pub file: &'static str,
    pub name: &'static str,
    pub group: Option<&'static str>,
}

pub const KUBE_ADMIN: KubeUser = KubeUser { file: "admin", name: "kubernetes-admin", group: Some("system:masters") };
pub const KUBE_CONTROLLER_MANAGER: KubeUser =
    KubeUser { file: "controller-manager", name: "system:kube-controller-manager", group: None };
pub const KUBE_SCHEDULER: KubeUser = KubeUser { file: "scheduler", name: "system:kube-scheduler", group: None };
/// kube-apiserver as etcd's client.
pub const KUBE_APISERVER_ETCD: KubeUser =
    KubeUser { file: "apiserver-etcd-client", name: "kube-apiserver", group: None };
/// cilia's operator, as its service account `kube-system/cilia-operator` (the user name and
/// group Kubernetes gives the account's tokens), so that deploy/kubernetes/rbac.yaml is all it may do.
pub const KUBE_CILIA_OPERATOR: KubeUser = KubeUser {
    file: "cilia-operator",
    name: "system:serviceaccount:kube-system:cilia-operator",
    group: Some("system:serviceaccounts"),
};
pub const KUBE_USERS: &[KubeUser] =
    &[KUBE_ADMIN, KUBE_CONTROLLER_MANAGER, KUBE_SCHEDULER, KUBE_APISERVER_ETCD, KUBE_CILIA_OPERATOR];

/// The names a pod reaches kube-apiserver by, through the `kubernetes` Service.
const APISERVER_DNS_NAMES: &[&str] =
    &["kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"];

/// What one leaf certificate says.
struct Subject<'a> {
    common_name: &'a str,
    organization: Option<&'a str>,
    dns_names: &'a [&'a str],
    ips: &'a [IpAddr],
    usages: &'a [ExtendedKeyUsagePurpose],
}

impl<'a> Subject<'a> {
    fn named(common_name: &'a str) -> Self {
        Subject { common_name, organization: None, dns_names: &[], ips: &[], usages: &[] }
    }

    fn at(self, ips: &'a [IpAddr]) -> Self {
        Subject { ips, ..self }
    }

    fn for_uses(self, usages: &'a [ExtendedKeyUsagePurpose]) -> Self {
        Subject { usages, ..self }
    }
}

struct Issuer<'a> {
    cert: &'a rcgen::Certificate,
    key: &'a KeyPair,
}

fn ca() -> Result<(rcgen::Certificate, KeyPair), LabError> {
    let key = KeyPair::generate().map_err(|e| pki_error("generate the CA key", e))?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| pki_error("CA parameters", e))?;
    params.distinguished_name.push(DnType::CommonName, "cilia lab CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let cert = params.self_signed(&key).map_err(|e| pki_error("sign the CA", e))?;
    Ok((cert, key))
}

fn pki_error(what: &'static str, e: rcgen::Error) -> LabError {
    LabError::io(what, "the lab's certificates", std::io::Error::other(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_everything_once_with_private_keys() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path().join("pki"));
        let servers = [("k8s-w1", Ipv4Addr::new(192, 168, 10, 101))];
        let ctr = [Ipv4Addr::new(192, 168, 10, 100)];
        assert!(pki.ensure(&ctr, &["k8s-w1", "admin"], &servers, &ctr).unwrap());
        for f in [
            pki.ca(),
            pki.etcd().cert,
            pki.client("k8s-w1").key,
            pki.client("admin").cert,
            pki.server("k8s-w1").key,
            pki.kube_apiserver().cert,
            pki.kube_user(&KUBE_ADMIN).key,
            pki.service_account_key(),
            pki.service_account_public_key(),
        ] {
            assert!(fs::read_to_string(&f).unwrap().starts_with("-----BEGIN"), "{}", f.display());
        }
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(pki.client("k8s-w1").key).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(pki.dir()).unwrap().permissions().mode() & 0o777, 0o700);
        let ca = fs::read_to_string(pki.ca()).unwrap();
        assert!(!pki.ensure(&ctr, &["k8s-w1", "admin"], &servers, &ctr).unwrap(), "made twice");
        assert_eq!(fs::read_to_string(pki.ca()).unwrap(), ca);
    }
}
