//! argon2id password hashing, bounded and with reused memory.

use argon2::password_hash::{self, Ident, Output, ParamsString, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use convosphere_domain::ports::PasswordHasher;
use convosphere_domain::{InfraError, Password, PasswordHash};
use rand::RngCore;
use secrecy::zeroize::Zeroizing;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::Semaphore;

/// OWASP's argon2id memory cost: 19 MiB (19,456 KiB).
pub const OWASP_M_COST: u32 = 19_456;
/// OWASP's argon2id time cost: 2 passes.
pub const OWASP_T_COST: u32 = 2;
/// OWASP's argon2id parallelism: 1 lane.
pub const OWASP_P_COST: u32 = 1;
/// Bytes of fresh salt in every new hash.
pub const SALT_LEN: usize = 16;
/// Bytes of argon2 output in every new hash.
pub const OUTPUT_LEN: usize = 32;
/// The most memory a stored hash may ask for (1 GiB, in KiB): a corrupt or
/// planted hash must not make the process allocate without bound.
pub const MAX_VERIFY_M_COST: u32 = 1024 * 1024;

/// Why an [`Argon2Hasher`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HasherError {
    /// The argon2 parameters are out of range.
    #[error("invalid argon2 parameters: {0}")]
    Params(argon2::Error),
    /// A bound of zero hashes in flight would block every login.
    #[error("at least one password hash must be allowed in flight")]
    NoPermits,
}

/// Hashes and checks passwords with argon2id (RFC 9106), in PHC string format.
///
/// - Hashing runs on tokio's blocking pool, never on an async worker.
/// - A semaphore bounds the hashes in flight (by default one per CPU), so a
///   flood of logins queues instead of allocating 19 MiB per request.
/// - The argon2 memory is taken from a pool of at most that many buffers
///   and given back after each hash: no allocation, page faults or zeroing
///   of 19 MiB per call.
/// - `verify(password, None)` checks against a dummy hash made at
///   construction, so a login with an unknown e-mail costs the same as one
///   with a known e-mail.
///
/// Cloning is cheap and shares the bound and the pool.
#[derive(Clone)]
pub struct Argon2Hasher {
    inner: Arc<Inner>,
}

struct Inner {
    params: Params,
    max_in_flight: usize,
    permits: Arc<Semaphore>,
    /// Buffers of exactly `params.block_count()` blocks, at most `max_in_flight` of them.
    pool: Mutex<Vec<Vec<Block>>>,
    dummy: StoredHash,
    running: AtomicUsize,
    peak: AtomicUsize,
}

/// A PHC string taken apart, ready to be recomputed.
struct StoredHash {
    algorithm: Algorithm,
    version: Version,
    params: Params,
    salt: Vec<u8>,
    expected: Vec<u8>,
}

impl Argon2Hasher {
    /// The production hasher: argon2id with OWASP's parameters
    /// (m = 19,456 KiB, t = 2, p = 1), 16-byte salts and 32-byte outputs,
    /// one hash in flight per CPU.
    pub fn owasp() -> Result<Self, HasherError> {
        Self::new(Self::owasp_params()?)
    }

    /// OWASP's argon2id parameters with a 32-byte output.
    pub fn owasp_params() -> Result<Params, HasherError> {
        Params::new(OWASP_M_COST, OWASP_T_COST, OWASP_P_COST, Some(OUTPUT_LEN)).map_err(HasherError::Params)
    }

    /// A hasher with these parameters (tests use cheap ones), one hash in
    /// flight per CPU.
    pub fn new(params: Params) -> Result<Self, HasherError> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_max_in_flight(params, cpus)
    }

    /// A hasher with these parameters and at most `max_in_flight` hashes
    /// computing at once; the others wait their turn.
    ///
    /// Computes the dummy hash for unknown accounts right away (one hash's
    /// worth of CPU time).
    pub fn with_max_in_flight(params: Params, max_in_flight: usize) -> Result<Self, HasherError> {
        if max_in_flight == 0 {
            return Err(HasherError::NoPermits);
        }
        let output_len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
        // The dummy hashes a random password nobody knows: it can never match.
        let mut dummy = StoredHash {
            algorithm: Algorithm::Argon2id,
            version: Version::V0x13,
            params: params.clone(),
            salt: random_bytes(SALT_LEN),
            expected: Vec::new(),
        };
        let unknown = Zeroizing::new(random_bytes(32));
        let mut memory = vec![Block::default(); params.block_count()];
        let mut expected = vec![0; output_len];
        dummy
            .compute(&unknown, &mut expected, &mut memory)
            .map_err(HasherError::Params)?;
        dummy.expected = expected;
        let mut pool = Vec::with_capacity(max_in_flight);
        pool.push(memory);
        Ok(Self {
            inner: Arc::new(Inner {
                params,
                max_in_flight,
                permits: Arc::new(Semaphore::new(max_in_flight)),
                pool: Mutex::new(pool),
                dummy,
                running: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
            }),
        })
    }

    /// The parameters of new hashes.
    pub fn params(&self) -> &Params {
        &self.inner.params
    }

    /// The most hashes that compute at once.
    pub fn max_in_flight(&self) -> usize {
        self.inner.max_in_flight
    }

    /// Hashes computing right now (a gauge for metrics).
    pub fn in_flight(&self) -> usize {
        self.inner.running.load(Ordering::SeqCst)
    }

    /// The most hashes that ever computed at once since the hasher was
    /// built; never above [`max_in_flight`](Self::max_in_flight).
    pub fn peak_in_flight(&self) -> usize {
        self.inner.peak.load(Ordering::SeqCst)
    }

    /// Whether a stored hash was made with other parameters than new hashes
    /// get (or is no argon2id hash at all), so that it should be replaced
    /// after the next successful login.
    pub fn needs_rehash(&self, hash: &PasswordHash) -> bool {
        match StoredHash::parse(hash.as_str()) {
            Ok(stored) => {
                stored.algorithm != Algorithm::Argon2id
                    || stored.version != Version::V0x13
                    || stored.params != self.inner.params
                    || stored.salt.len() < SALT_LEN
            }
            Err(_) => true,
        }
    }

    /// Runs `job` on the blocking pool once a permit is free. The permit
    /// moves into the blocking task, so a caller that gives up (a client
    /// that disconnects) cannot free its slot before the hash is done.
    async fn run<T: Send + 'static>(&self, job: impl FnOnce(&Inner) -> T + Send + 'static) -> Result<T, InfraError> {
        let permit = Arc::clone(&self.inner.permits)
            .acquire_owned()
            .await
            .map_err(|_| InfraError::new("the password hasher is shut down"))?;
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _running = Running::enter(&inner);
            job(&inner)
        })
        .await
        .map_err(|e| InfraError::new(format!("password hashing task failed: {e}")))
    }
}

impl fmt::Debug for Argon2Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let params = &self.inner.params;
        f.debug_struct("Argon2Hasher")
            .field("m_cost", &params.m_cost())
            .field("t_cost", &params.t_cost())
            .field("p_cost", &params.p_cost())
            .field("max_in_flight", &self.inner.max_in_flight)
            .finish_non_exhaustive()
    }
}

impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, InfraError> {
        let secret = Zeroizing::new(password.expose().as_bytes().to_vec());
        let stored = StoredHash {
            algorithm: Algorithm::Argon2id,
            version: Version::V0x13,
            params: self.inner.params.clone(),
            salt: random_bytes(SALT_LEN),
            expected: Vec::new(),
        };
        self.run(move |inner| {
            let mut output = vec![0; stored.params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN)];
            inner.compute(&stored, &secret, &mut output).map_err(InfraError::new)?;
            stored.to_phc(&output)
        })
        .await?
    }

    async fn verify(&self, password: &Password, hash: Option<&PasswordHash>) -> Result<bool, InfraError> {
        let secret = Zeroizing::new(password.expose().as_bytes().to_vec());
        let stored = match hash {
            Some(hash) => Some(StoredHash::parse(hash.as_str()).map_err(InfraError::new)?),
            None => None,
        };
        if let Some(stored) = &stored {
            if stored.params.m_cost() > MAX_VERIFY_M_COST.max(self.inner.params.m_cost()) {
                return Err(InfraError::new(format!(
                    "a stored password hash asks for {} KiB of memory, over the limit of {MAX_VERIFY_M_COST} KiB",
                    stored.params.m_cost()
                )));
            }
        }
        self.run(move |inner| {
            let target = stored.as_ref().unwrap_or(&inner.dummy);
            let mut output = Zeroizing::new(vec![0; target.expected.len()]);
            inner.compute(target, &secret, &mut output).map_err(InfraError::new)?;
            let matches = crate::constant_time_eq(&output, &target.expected);
            // Against the dummy the answer is always "no", whatever the bytes say.
            Ok(matches && stored.is_some())
        })
        .await?
    }
}

impl Inner {
    /// Computes `target`'s argon2 of `password` into `output`, in pooled memory.
    fn compute(&self, target: &StoredHash, password: &[u8], output: &mut [u8]) -> Result<(), argon2::Error> {
        let mut memory = self.take_memory(target.params.block_count());
        let result = target.compute(password, output, &mut memory);
        self.give_back(memory);
        result
    }

    fn pool_blocks(&self) -> usize {
        self.params.block_count()
    }

    /// A buffer of at least `blocks` blocks: a pooled one when it is big
    /// enough, else a fresh one (only for hashes made with more memory than
    /// new hashes use).
    fn take_memory(&self, blocks: usize) -> Vec<Block> {
        if blocks <= self.pool_blocks() {
            let pooled = self.pool.lock().unwrap_or_else(PoisonError::into_inner).pop();
            if let Some(memory) = pooled {
                return memory;
            }
            return vec![Block::default(); self.pool_blocks()];
        }
        vec![Block::default(); blocks]
    }

    /// Keeps a buffer of the pool's size for the next hash; drops others.
    fn give_back(&self, memory: Vec<Block>) {
        if memory.len() != self.pool_blocks() {
            return;
        }
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < self.max_in_flight {
            pool.push(memory);
        }
    }
}

/// Counts a hash as running for as long as it lives.
struct Running<'a>(&'a Inner);

impl<'a> Running<'a> {
    fn enter(inner: &'a Inner) -> Self {
        let now = inner.running.fetch_add(1, Ordering::SeqCst) + 1;
        inner.peak.fetch_max(now, Ordering::SeqCst);
        Self(inner)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl StoredHash {
    /// Parses a PHC string of any argon2 variant, version and parameters.
    fn parse(phc: &str) -> Result<Self, password_hash::Error> {
        let hash = password_hash::PasswordHash::new(phc)?;
        let algorithm = Algorithm::try_from(hash.algorithm)?;
        let version = match hash.version {
            Some(v) => Version::try_from(v)?,
            None => Version::V0x13,
        };
        let params = Params::try_from(&hash)?;
        let mut salt = [0u8; password_hash::Salt::MAX_LENGTH];
        let salt = hash
            .salt
            .ok_or(password_hash::Error::PhcStringField)?
            .decode_b64(&mut salt)?
            .to_vec();
        let expected = hash.hash.ok_or(password_hash::Error::Crypto)?.as_bytes().to_vec();
        Ok(Self {
            algorithm,
            version,
            params,
            salt,
            expected,
        })
    }

    /// Computes argon2 with this hash's algorithm, version, parameters and
    /// salt. `memory` needs no zeroing: argon2's first pass writes every
    /// block before any block is read.
    fn compute(&self, password: &[u8], output: &mut [u8], memory: &mut [Block]) -> Result<(), argon2::Error> {
        Argon2::new(self.algorithm, self.version, self.params.clone())
            .hash_password_into_with_memory(password, &self.salt, output, memory)
    }

    /// The PHC string of this hash with the given output.
    fn to_phc(&self, output: &[u8]) -> Result<PasswordHash, InfraError> {
        let salt = SaltString::encode_b64(&self.salt).map_err(InfraError::new)?;
        let phc = password_hash::PasswordHash {
            algorithm: Ident::from(self.algorithm),
            version: Some(u32::from(self.version)),
            params: ParamsString::try_from(&self.params).map_err(InfraError::new)?,
            salt: Some(salt.as_salt()),
            hash: Some(Output::new(output).map_err(InfraError::new)?),
        };
        Ok(PasswordHash::from_phc(phc.to_string()))
    }
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Params {
        Params::new(64, 1, 1, Some(OUTPUT_LEN)).unwrap()
    }

    #[test]
    fn new_hashes_need_no_rehash_but_other_params_do() {
        let hasher = Argon2Hasher::new(cheap()).unwrap();
        let salt = vec![7; SALT_LEN];
        let mut stored = StoredHash {
            algorithm: Algorithm::Argon2id,
            version: Version::V0x13,
            params: cheap(),
            salt,
            expected: Vec::new(),
        };
        let same = stored.to_phc(&[1; OUTPUT_LEN]).unwrap();
        assert!(!hasher.needs_rehash(&same));
        stored.params = Params::new(128, 1, 1, Some(OUTPUT_LEN)).unwrap();
        assert!(hasher.needs_rehash(&stored.to_phc(&[1; OUTPUT_LEN]).unwrap()));
        assert!(hasher.needs_rehash(&PasswordHash::from_phc("$2b$12$not-argon2")));
    }

    #[test]
    fn the_pool_keeps_at_most_one_buffer_per_permit() {
        let hasher = Argon2Hasher::with_max_in_flight(cheap(), 2).unwrap();
        let inner = &hasher.inner;
        let buffers: Vec<_> = (0..4).map(|_| inner.take_memory(64)).collect();
        for buffer in buffers {
            inner.give_back(buffer);
        }
        assert_eq!(inner.pool.lock().unwrap().len(), 2);
        // A bigger hash than ours gets its own buffer, which is not kept.
        let big = inner.take_memory(256);
        assert_eq!(big.len(), 256);
        inner.give_back(big);
        assert!(inner.pool.lock().unwrap().iter().all(|b| b.len() == 64));
    }

    #[test]
    fn zero_permits_are_refused() {
        assert!(matches!(
            Argon2Hasher::with_max_in_flight(cheap(), 0),
            Err(HasherError::NoPermits)
        ));
    }

    #[test]
    fn debug_shows_the_parameters_only() {
        let text = format!("{:?}", Argon2Hasher::new(cheap()).unwrap());
        assert!(text.contains("m_cost: 64"), "{text}");
        assert!(!text.contains("salt"), "{text}");
    }
}
