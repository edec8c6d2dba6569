//! [`Words`]: up to `N` message words, inline, filled from the front (the
//! store of receive buffers and of variable arguments).

use l4_abi::Error;

/// Up to `N` words, stored inline and filled from the front.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Words<const N: usize> {
    words: [u64; N],
    len: usize,
}

impl<const N: usize> Words<N> {
    /// No words.
    pub(crate) const fn new() -> Words<N> {
        Words {
            words: [0; N],
            len: 0,
        }
    }

    /// The one word `w`.
    pub(crate) const fn one(w: u64) -> Words<N> {
        let mut b = Words::new();
        b.words[0] = w;
        b.len = 1;
        b
    }

    /// The words.
    pub(crate) fn as_slice(&self) -> &[u64] {
        &self.words[..self.len]
    }

    /// How many more words fit.
    pub(crate) const fn room(&self) -> usize {
        N - self.len
    }

    /// Appends `ws`; [`Error::MsgTooLong`], and nothing appended, if they
    /// do not fit.
    pub(crate) fn push(&mut self, ws: &[u64]) -> Result<(), Error> {
        let end = self.len + ws.len();
        self.words
            .get_mut(self.len..end)
            .ok_or(Error::MsgTooLong)?
            .copy_from_slice(ws);
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_what_fits_and_nothing_else() {
        let mut w = Words::<3>::one(7);
        assert_eq!(w.push(&[8, 9]), Ok(()));
        assert_eq!(w.as_slice(), [7, 8, 9]);
        assert_eq!(w.room(), 0);
        assert_eq!(w.push(&[10]), Err(Error::MsgTooLong));
        assert_eq!(w.as_slice(), [7, 8, 9]);
        assert_eq!(
            Words::<3>::new().push(&[1, 2, 3, 4]),
            Err(Error::MsgTooLong)
        );
    }
}
