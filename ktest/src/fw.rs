//! The test framework: a test is a name and a function returning [`R`];
//! failures carry a formatted reason. Each module lists its tests with
//! [`tests!`](macro@crate::tests); `main` runs them in order.

use core::fmt;

use l4::Error;
use l4::io::FixedStr;

/// Why a test failed.
pub struct Fail(pub FixedStr<200>);

impl Fail {
    /// A failure with a formatted reason.
    pub fn new(args: fmt::Arguments<'_>) -> Fail {
        Fail(FixedStr::format(args))
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Fail {
        Fail::new(format_args!("unexpected error {e:?} ({e})"))
    }
}

impl From<&'static str> for Fail {
    fn from(s: &'static str) -> Fail {
        Fail::new(format_args!("{s}"))
    }
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The result of a test.
pub type R = Result<(), Fail>;

/// One test.
pub struct Test {
    /// `module.what`.
    pub name: &'static str,
    /// The test.
    pub run: fn() -> R,
}

/// Adds what was being done to an error.
pub trait Ctx<T> {
    /// `what: error` on failure.
    fn ctx(self, what: &str) -> Result<T, Fail>;
}

impl<T> Ctx<T> for Result<T, Error> {
    fn ctx(self, what: &str) -> Result<T, Fail> {
        self.map_err(|e| Fail::new(format_args!("{what}: {e:?} ({e})")))
    }
}

/// The list of a module's tests: `tests! { "mod.name" => function, ... }`.
#[macro_export]
macro_rules! tests {
    ($($name:literal => $f:path),* $(,)?) => {
        /// This module's tests, in order.
        pub const TESTS: &[$crate::fw::Test] = &[
            $($crate::fw::Test { name: $name, run: $f },)*
        ];
    };
}

/// Fails the test with a formatted reason.
#[macro_export]
macro_rules! fail {
    ($($arg:tt)*) => {
        return Err($crate::fw::Fail::new(format_args!($($arg)*)))
    };
}

/// Fails the test unless the condition holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !($cond) {
            $crate::fail!($($arg)*);
        }
    };
}

/// Fails the test unless both values are equal.
#[macro_export]
macro_rules! ensure_eq {
    ($got:expr, $want:expr, $what:expr) => {{
        let (got, want) = ($got, $want);
        if got != want {
            $crate::fail!("{}: got {:?}, expected {:?}", $what, got, want);
        }
    }};
}

/// Fails the test unless the result is the error `$err`.
#[macro_export]
macro_rules! expect_err {
    ($res:expr, $err:expr, $what:expr) => {
        match $res {
            Err(e) if e == $err => {}
            Err(e) => $crate::fail!("{}: got {:?}, expected {:?}", $what, e, $err),
            Ok(_) => $crate::fail!("{}: succeeded, expected {:?}", $what, $err),
        }
    };
}

/// Fails the test unless the result is an error (the ABI does not fix the
/// code); returns the error.
#[macro_export]
macro_rules! expect_some_err {
    ($res:expr, $what:expr) => {
        match $res {
            Err(e) => e,
            Ok(_) => $crate::fail!("{}: succeeded, expected a refusal", $what),
        }
    };
}
