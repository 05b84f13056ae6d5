//! etcd's JWT tokens (`--auth-token jwt,sign-method=…,pub-key=…,priv-key=…,ttl=…`).
//!
//! A token is a JWT signed with the configured key, carrying etcd's three claims: `username`,
//! `revision` (the auth revision when it was issued) and `exp`. Nothing is kept in memory, so
//! tokens stay valid across a restart until they expire; a request whose token's revision is
//! older than the auth state is refused with "revision of auth store is old", as etcd does,
//! and etcd's clients then authenticate again. The signing and verification are
//! `jsonwebtoken`'s; keys in the forms it does not read (SEC1 EC keys) are re-encoded, and the
//! public half of an Ed25519 key is derived, with aws-lc-rs (`private_key`, `public_half`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use aws_lc_rs::signature::KeyPair as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject as _;
use serde::{Deserialize, Serialize};

/// etcd's default lifetime of a JWT token.
pub const DEFAULT_TTL: Duration = Duration::from_secs(5 * 60);

/// Signs and verifies tokens.
pub struct JwtTokens {
    algorithm: Algorithm,
    /// `None` with only a public key: tokens are verified, never issued (etcd's verify-only).
    signing: Option<EncodingKey>,
    verifying: DecodingKey,
    ttl: Duration,
}

impl std::fmt::Debug for JwtTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtTokens")
            .field("algorithm", &self.algorithm)
            .field("signs", &self.signing.is_some())
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// Reads a key of one family from PEM.
type PemReader<K> = fn(&[u8]) -> jsonwebtoken::errors::Result<K>;

/// The signing key in `pem` for an asymmetric `algorithm`, read as etcd reads it: an EC key
/// either PKCS#8 (`PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`, what `openssl ecparam -genkey`
/// writes), on the algorithm's curve; an Ed25519 key PKCS#8 (v1, as `openssl genpkey`
/// writes, or v2); an RSA key PKCS#8 or PKCS#1. Other blocks in the file (`EC PARAMETERS`)
/// are skipped. jsonwebtoken itself takes EC keys in PKCS#8 only, so an EC key is handed to
/// it re-encoded as PKCS#8 by aws-lc-rs, which also checks its curve.
fn private_key(algorithm: Algorithm, pem: &[u8]) -> anyhow::Result<EncodingKey> {
    let (curve, name) = match algorithm {
        Algorithm::ES256 => (
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            "P-256",
        ),
        Algorithm::ES384 => (
            &aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            "P-384",
        ),
        Algorithm::EdDSA => return Ok(EncodingKey::from_ed_pem(pem)?),
        _ => return Ok(EncodingKey::from_rsa_pem(pem)?),
    };
    let der = PrivateKeyDer::from_pem_slice(pem)?;
    let pair = aws_lc_rs::signature::EcdsaKeyPair::from_private_key_der(curve, der.secret_der())
        .map_err(|_| anyhow::anyhow!("not a {name} private key"))?;
    let pkcs8 = pair
        .to_pkcs8v1()
        .map_err(|_| anyhow::anyhow!("cannot re-encode the key as PKCS#8"))?;
    Ok(EncodingKey::from_ec_der(pkcs8.as_ref()))
}

/// The key that verifies what `signing` signs: jsonwebtoken derives it for RSA and EC keys,
/// aws-lc-rs for Ed25519 ones.
fn public_half(algorithm: Algorithm, signing: &EncodingKey) -> anyhow::Result<DecodingKey> {
    if algorithm == Algorithm::EdDSA {
        let pair = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(signing.inner())
            .map_err(|_| anyhow::anyhow!("not an Ed25519 private key"))?;
        return Ok(DecodingKey::from_ed_der(pair.public_key().as_ref()));
    }
    Ok(DecodingKey::from_jwk(&Jwk::from_encoding_key(
        signing, algorithm,
    )?)?)
}

/// What a valid token says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    exp: u64,
}

/// Why a token cannot be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// Only a public key was configured.
    #[error("auth: token signing attempted with verify-only key")]
    VerifyOnly,
    /// The signature failed (a key the library refused when signing).
    #[error("auth: signing the token: {0}")]
    Signing(String),
}

fn read(option: &str, path: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(Path::new(path)).with_context(|| format!("--auth-token: reading {option}={path}"))
}

impl JwtTokens {
    /// From the options after `jwt,` in `--auth-token` (comma-separated `key=value`).
    pub fn from_options(options: &str) -> anyhow::Result<JwtTokens> {
        let mut map = BTreeMap::new();
        for part in options.split(',').filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .with_context(|| format!("--auth-token: {part:?} is not key=value"))?;
            match key {
                "sign-method" | "pub-key" | "priv-key" | "ttl" => {
                    map.insert(key, value);
                }
                _ => anyhow::bail!(
                    "--auth-token: unknown JWT option {key:?} (sign-method, pub-key, priv-key, ttl)"
                ),
            }
        }
        let method = map.get("sign-method").context(
            "--auth-token: jwt needs sign-method=… (RS256, PS256, ES256, EdDSA, HS256, …)",
        )?;
        let algorithm: Algorithm = method
            .parse()
            .map_err(|_| anyhow::anyhow!("--auth-token: unknown sign-method {method:?}"))?;
        let ttl = match map.get("ttl") {
            None => DEFAULT_TTL,
            Some(ttl) => humantime::parse_duration(ttl)
                .with_context(|| format!("--auth-token: ttl={ttl} is not a duration"))?,
        };
        if ttl.is_zero() {
            anyhow::bail!("--auth-token: ttl must be greater than 0");
        }
        let private = map
            .get("priv-key")
            .map(|p| read("priv-key", p))
            .transpose()?;
        let public = map.get("pub-key").map(|p| read("pub-key", p)).transpose()?;
        let bad_key = |option: &str| {
            let what = format!("--auth-token: {option} is not a PEM key for {method}");
            move |e: anyhow::Error| anyhow::anyhow!("{what}: {e:#}")
        };
        let (signing, verifying) = match algorithm {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                // As etcd: the priv-key file's bytes are the shared secret.
                let secret = private.context("--auth-token: an HMAC sign-method needs priv-key")?;
                if secret.is_empty() {
                    anyhow::bail!("--auth-token: the priv-key file is empty");
                }
                (
                    Some(EncodingKey::from_secret(&secret)),
                    DecodingKey::from_secret(&secret),
                )
            }
            _ => {
                let decoding: PemReader<DecodingKey> = match algorithm {
                    Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem,
                    Algorithm::EdDSA => DecodingKey::from_ed_pem,
                    _ => DecodingKey::from_rsa_pem,
                };
                let signing = private
                    .as_deref()
                    .map(|p| private_key(algorithm, p).map_err(bad_key("priv-key")))
                    .transpose()?;
                let verifying = match (&public, &signing) {
                    (Some(public), _) => decoding(public)
                        .map_err(anyhow::Error::from)
                        .map_err(bad_key("pub-key"))?,
                    // As etcd: without pub-key, tokens are verified with priv-key's public
                    // half.
                    (None, Some(key)) => {
                        public_half(algorithm, key).map_err(bad_key("priv-key"))?
                    }
                    (None, None) => {
                        anyhow::bail!(
                            "--auth-token: sign-method {method} needs priv-key or pub-key"
                        )
                    }
                };
                (signing, verifying)
            }
        };
        let tokens = JwtTokens {
            algorithm,
            signing,
            verifying,
            ttl,
        };
        if tokens.signing.is_some() {
            // A private key that is not the public key's would issue tokens nobody accepts.
            let probe = tokens.assign("t4-key-check", 0)?;
            if tokens.user(&probe).is_none() {
                anyhow::bail!("--auth-token: priv-key and pub-key are not a pair");
            }
        }
        Ok(tokens)
    }

    /// A token for `user`, issued at auth revision `revision`, valid for the configured TTL.
    pub fn assign(&self, user: &str, revision: u64) -> Result<String, IssueError> {
        let key = self.signing.as_ref().ok_or(IssueError::VerifyOnly)?;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let claims = Claims {
            username: user.to_string(),
            revision,
            exp: (now + self.ttl).as_secs(),
        };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, key)
            .map_err(|e| IssueError::Signing(e.to_string()))
    }

    /// The user and auth revision of a valid, unexpired token signed with this key.
    pub fn user(&self, token: &str) -> Option<(String, u64)> {
        let mut validation = Validation::new(self.algorithm);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.verifying, &validation).ok()?;
        Some((data.claims.username, data.claims.revision))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hmac(secret: &[u8], extra: &str) -> (tempfile::TempDir, anyhow::Result<JwtTokens>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, secret).unwrap();
        let options = format!("sign-method=HS256,priv-key={}{extra}", path.display());
        let tokens = JwtTokens::from_options(&options);
        (dir, tokens)
    }

    #[test]
    fn a_token_names_its_user_and_revision_until_it_expires() {
        let (_dir, tokens) = hmac(b"a shared secret", ",ttl=90s");
        let tokens = tokens.unwrap();
        let token = tokens.assign("alice", 7).unwrap();
        assert_eq!(tokens.user(&token), Some(("alice".to_string(), 7)));

        // Signed with another secret, or expired: not valid.
        let (_other_dir, other) = hmac(b"another secret", "");
        assert_eq!(other.unwrap().user(&token), None);
        let expired = Claims {
            username: "alice".into(),
            revision: 7,
            exp: 1,
        };
        let expired = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &expired,
            &EncodingKey::from_secret(b"a shared secret"),
        )
        .unwrap();
        assert_eq!(tokens.user(&expired), None);
        assert_eq!(tokens.user("not.a.jwt"), None);
    }

    #[test]
    fn every_asymmetric_sign_method_signs_and_verifies() {
        let cases: [(&str, &rcgen::SignatureAlgorithm); 5] = [
            ("ES256", &rcgen::PKCS_ECDSA_P256_SHA256),
            ("ES384", &rcgen::PKCS_ECDSA_P384_SHA384),
            ("EdDSA", &rcgen::PKCS_ED25519),
            ("RS256", &rcgen::PKCS_RSA_SHA256),
            ("PS512", &rcgen::PKCS_RSA_SHA256),
        ];
        for (method, algorithm) in cases {
            let key = rcgen::KeyPair::generate_for(algorithm).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let (private, public) = (dir.path().join("key"), dir.path().join("pub"));
            std::fs::write(&private, key.serialize_pem()).unwrap();
            std::fs::write(&public, key.public_key_pem()).unwrap();
            let options = format!(
                "sign-method={method},priv-key={},pub-key={}",
                private.display(),
                public.display()
            );
            let tokens = JwtTokens::from_options(&options).unwrap();
            let token = tokens.assign("bob", 3).unwrap();
            assert_eq!(
                tokens.user(&token),
                Some(("bob".to_string(), 3)),
                "{method}"
            );

            // The private key alone signs and verifies (its public half derived), as in
            // etcd.
            let private_only = JwtTokens::from_options(&format!(
                "sign-method={method},priv-key={}",
                private.display()
            ))
            .unwrap();
            assert_eq!(
                private_only.user(&token),
                Some(("bob".to_string(), 3)),
                "{method}"
            );
            let own = private_only.assign("carol", 4).unwrap();
            assert_eq!(
                tokens.user(&own),
                Some(("carol".to_string(), 4)),
                "{method}"
            );

            // The public key alone verifies what the pair signed, and signs nothing.
            let verify_only = JwtTokens::from_options(&format!(
                "sign-method={method},pub-key={}",
                public.display()
            ))
            .unwrap();
            assert_eq!(
                verify_only.user(&token),
                Some(("bob".to_string(), 3)),
                "{method}"
            );
            assert!(matches!(
                verify_only.assign("bob", 3),
                Err(IssueError::VerifyOnly)
            ));
        }
    }

    /// Writes PEM blocks (label, DER) to a file in `dir`; its path.
    fn pem_file(dir: &tempfile::TempDir, name: &str, blocks: &[(&str, &[u8])]) -> String {
        let pems: Vec<pem::Pem> = blocks
            .iter()
            .map(|(label, der)| pem::Pem::new(*label, der.to_vec()))
            .collect();
        let path = dir.path().join(name);
        std::fs::write(&path, pem::encode_many(&pems)).unwrap();
        path.display().to_string()
    }

    #[test]
    fn sec1_ec_keys_sign_as_in_etcd_and_must_be_on_the_methods_curve() {
        use aws_lc_rs::encoding::AsDer as _;
        use aws_lc_rs::signature::{
            ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
        };
        // The DER of each curve's name, as `openssl ecparam -genkey` writes it before the key.
        const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
        const P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
        let cases = [
            ("ES256", &ECDSA_P256_SHA256_FIXED_SIGNING, P256, "ES384"),
            ("ES384", &ECDSA_P384_SHA384_FIXED_SIGNING, P384, "ES256"),
        ];
        for (method, curve, parameters, other_method) in cases {
            let pair = EcdsaKeyPair::generate(curve).unwrap();
            let sec1: aws_lc_rs::encoding::EcPrivateKeyRfc5915Der =
                pair.private_key().as_der().unwrap();
            let pkcs8 = pair.to_pkcs8v1().unwrap();
            let dir = tempfile::tempdir().unwrap();
            let sec1_only = pem_file(&dir, "sec1", &[("EC PRIVATE KEY", sec1.as_ref())]);
            let with_parameters = pem_file(
                &dir,
                "with-parameters",
                &[
                    ("EC PARAMETERS", parameters),
                    ("EC PRIVATE KEY", sec1.as_ref()),
                ],
            );
            // The same key's public half, through its PKCS#8 form.
            let pkcs8_pem = pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref().to_vec()));
            let public = rcgen::KeyPair::from_pem(&pkcs8_pem)
                .unwrap()
                .public_key_pem();
            let public_path = dir.path().join("pub");
            std::fs::write(&public_path, public).unwrap();

            let verify_only = JwtTokens::from_options(&format!(
                "sign-method={method},pub-key={}",
                public_path.display()
            ))
            .unwrap();
            for private in [&sec1_only, &with_parameters] {
                let signer =
                    JwtTokens::from_options(&format!("sign-method={method},priv-key={private}"))
                        .unwrap();
                let token = signer.assign("dave", 9).unwrap();
                assert_eq!(signer.user(&token), Some(("dave".to_string(), 9)));
                assert_eq!(verify_only.user(&token), Some(("dave".to_string(), 9)));
                JwtTokens::from_options(&format!(
                    "sign-method={method},priv-key={private},pub-key={}",
                    public_path.display()
                ))
                .unwrap();
            }

            // A key on the other curve is refused, naming the option and the curve wanted.
            let error = JwtTokens::from_options(&format!(
                "sign-method={other_method},priv-key={sec1_only}"
            ))
            .unwrap_err()
            .to_string();
            assert!(
                error.contains("priv-key is not a PEM key for")
                    && error.contains(if other_method == "ES256" {
                        "P-256"
                    } else {
                        "P-384"
                    }),
                "{error}"
            );
        }
    }

    #[test]
    fn an_ed25519_private_key_that_is_not_the_public_keys_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let one = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let (private, public) = (dir.path().join("key"), dir.path().join("pub"));
        std::fs::write(&private, one.serialize_pem()).unwrap();
        std::fs::write(&public, other.public_key_pem()).unwrap();
        let error = JwtTokens::from_options(&format!(
            "sign-method=EdDSA,priv-key={},pub-key={}",
            private.display(),
            public.display()
        ))
        .unwrap_err()
        .to_string();
        assert!(error.contains("are not a pair"), "{error}");
        // Not a key at all.
        std::fs::write(
            &private,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let error =
            JwtTokens::from_options(&format!("sign-method=EdDSA,priv-key={}", private.display()))
                .unwrap_err()
                .to_string();
        assert!(
            error.contains("priv-key is not a PEM key for EdDSA"),
            "{error}"
        );
    }

    #[test]
    fn bad_options_are_refused_with_the_option_named() {
        let error = |options: &str| JwtTokens::from_options(options).unwrap_err().to_string();
        assert!(error("").contains("jwt needs sign-method"));
        assert!(error("sign-method=HS256").contains("needs priv-key"));
        assert!(
            error("sign-method=HS256,priv-key=/no/such/file").contains("priv-key=/no/such/file")
        );
        assert!(error("sign-method=RS256,priv-key=/x").contains("priv-key=/x"));
        assert!(error("ttl").contains("is not key=value"));
        let (_dir, zero) = hmac(b"s", ",ttl=0s");
        assert!(
            zero.unwrap_err()
                .to_string()
                .contains("ttl must be greater than 0")
        );
        let (_dir, empty) = hmac(b"", "");
        assert!(empty.unwrap_err().to_string().contains("is empty"));
    }
}
