use core::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A fixed-size secret: boxed (never copied around the stack by moves), zeroized on drop,
/// redacted in `Debug`, and never `Clone` by accident (use [`SecretBytes::duplicate`]).
pub struct SecretBytes<const N: usize>(Box<[u8; N]>);

impl<const N: usize> SecretBytes<N> {
    /// Takes ownership of `bytes`, zeroizing the caller's copy.
    pub fn new(bytes: &mut [u8; N]) -> Self {
        let out = Self(Box::new(*bytes));
        bytes.zeroize();
        out
    }

    /// Copies the secret from a slice. Errors if the slice has the wrong length.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, crate::CryptoError> {
        if bytes.len() != N {
            return Err(crate::CryptoError::InvalidLength {
                what: "secret",
                expected: N,
                found: bytes.len(),
            });
        }
        let mut b = Box::new([0u8; N]);
        b.copy_from_slice(bytes);
        Ok(Self(b))
    }

    /// A zero-filled secret to be written into with [`SecretBytes::expose_mut`].
    pub fn zeroed() -> Self {
        Self(Box::new([0u8; N]))
    }

    /// Fills a new secret from a cryptographic RNG.
    pub fn random(rng: &mut impl rand_core::CryptoRngCore) -> Self {
        let mut s = Self::zeroed();
        rng.fill_bytes(s.0.as_mut());
        s
    }

    /// Borrows the secret bytes.
    pub fn expose(&self) -> &[u8; N] {
        &self.0
    }

    /// Mutably borrows the secret bytes (for filling from a KDF).
    pub fn expose_mut(&mut self) -> &mut [u8; N] {
        &mut self.0
    }

    /// An explicit copy: named so that copying a secret is visible in review.
    pub fn duplicate(&self) -> Self {
        Self(Box::new(*self.0))
    }
}

impl<const N: usize> Zeroize for SecretBytes<N> {
    fn zeroize(&mut self) {
        self.0.zeroize();
    }
}

impl<const N: usize> Drop for SecretBytes<N> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<const N: usize> ZeroizeOnDrop for SecretBytes<N> {}

impl<const N: usize> fmt::Debug for SecretBytes<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes<{N}>([REDACTED])")
    }
}

impl<const N: usize> PartialEq for SecretBytes<N> {
    /// Constant-time comparison.
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.0.as_slice().ct_eq(other.0.as_slice()).into()
    }
}

impl<const N: usize> Eq for SecretBytes<N> {}
