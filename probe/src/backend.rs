//! The backend a user picks, and the operating system the probe found.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// The FUSE transport to use: what `--backend` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// Let the probe choose: `kext` when usable, then `fuse-t`.
    Auto,
    /// The macFUSE kernel extension (`/dev/macfuseN`); on Linux the `/dev/fuse` device.
    Kext,
    /// FUSE-T: a user-space NFS server mounted by the kernel's NFS client (macOS only).
    FuseT,
}

impl Backend {
    /// The concrete backends in the order `auto` prefers them.
    pub const CONCRETE: [Backend; 2] = [Backend::Kext, Backend::FuseT];

    /// The name used on the command line and in JSON: `auto`, `kext` or `fuse-t`.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Kext => "kext",
            Backend::FuseT => "fuse-t",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A backend name that is not `auto`, `kext` or `fuse-t`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown backend {0:?}: expected auto, kext or fuse-t")]
pub struct UnknownBackend(pub String);

impl FromStr for Backend {
    type Err = UnknownBackend;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Backend::Auto),
            "kext" => Ok(Backend::Kext),
            "fuse-t" => Ok(Backend::FuseT),
            other => Err(UnknownBackend(other.to_owned())),
        }
    }
}

/// The operating system of the probed host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Os {
    /// macOS.
    Macos,
    /// Linux.
    Linux,
    /// Anything else: no backend is usable there.
    Other,
}

impl Os {
    /// The operating system this binary was built for.
    pub fn current() -> Os {
        match std::env::consts::OS {
            "macos" => Os::Macos,
            "linux" => Os::Linux,
            _ => Os::Other,
        }
    }
}

impl fmt::Display for Os {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Os::Macos => "macOS",
            Os::Linux => "Linux",
            Os::Other => "an unsupported OS",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names_round_trip() {
        for backend in [Backend::Auto, Backend::Kext, Backend::FuseT] {
            assert_eq!(backend.to_string().parse::<Backend>(), Ok(backend));
        }
        assert_eq!(
            serde_json::to_string(&Backend::FuseT).unwrap(),
            "\"fuse-t\""
        );
        assert!("macfuse".parse::<Backend>().is_err());
    }
}
