//! A bounds-checked byte reader, in the spirit of arti's `tor-bytes` `Reader`.
//!
//! Every read checks the remaining length first and returns [`Incomplete`] instead of
//! panicking, so a parser built on it cannot index out of bounds whatever the input. The
//! reader never allocates.

/// Not enough bytes remained for a read: `needed` more were required than were present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("input ended early: {needed} more bytes needed")]
pub struct Incomplete {
    /// How many bytes beyond the end of the input the read needed.
    pub needed: usize,
}

/// A cursor over a byte slice whose every read is bounds-checked.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader positioned at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    /// Bytes consumed so far.
    pub fn consumed(&self) -> usize {
        self.pos
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    /// The next `n` bytes, consumed.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Incomplete> {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        match rest.get(..n) {
            Some(taken) => {
                self.pos += n;
                Ok(taken)
            }
            None => Err(Incomplete {
                needed: n - rest.len(),
            }),
        }
    }

    /// The next `N` bytes as an array, consumed.
    pub fn take_array<const N: usize>(&mut self) -> Result<[u8; N], Incomplete> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// One byte.
    pub fn take_u8(&mut self) -> Result<u8, Incomplete> {
        Ok(u8::from_be_bytes(self.take_array()?))
    }

    /// A big-endian `u16`.
    pub fn take_u16(&mut self) -> Result<u16, Incomplete> {
        Ok(u16::from_be_bytes(self.take_array()?))
    }

    /// A big-endian `u32`.
    pub fn take_u32(&mut self) -> Result<u32, Incomplete> {
        Ok(u32::from_be_bytes(self.take_array()?))
    }

    /// Everything not yet consumed, consumed.
    pub fn take_rest(&mut self) -> &'a [u8] {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        self.pos = self.bytes.len();
        rest
    }

    /// `Ok(())` if every byte was consumed, else `Err(n)` with the number left over.
    pub fn should_be_exhausted(&self) -> Result<(), usize> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_in_order_and_reports_shortfall() {
        let data = [1u8, 0, 2, 0, 0, 0, 3, 9, 9];
        let mut r = Reader::new(&data);
        assert_eq!(r.take_u8(), Ok(1));
        assert_eq!(r.take_u16(), Ok(2));
        assert_eq!(r.take_u32(), Ok(3));
        assert_eq!(r.consumed(), 7);
        assert_eq!(r.remaining(), 2);
        assert_eq!(r.should_be_exhausted(), Err(2));
        assert_eq!(r.take_u32(), Err(Incomplete { needed: 2 }));
        // A failed read consumes nothing.
        assert_eq!(r.remaining(), 2);
        assert_eq!(
            r.take(usize::MAX),
            Err(Incomplete {
                needed: usize::MAX - 2
            })
        );
        assert_eq!(r.take_rest(), &[9, 9]);
        assert_eq!(r.should_be_exhausted(), Ok(()));
        assert_eq!(r.take_u8(), Err(Incomplete { needed: 1 }));
        assert_eq!(r.take(0), Ok(&[][..]));
    }
}
