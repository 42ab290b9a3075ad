//! What the engine's errors share: a [`Remedy`], the fix an error's message already states in
//! domain words, as a typed value so that each face can add its own hint (the CLI names the
//! flag, the TUI the field or key), and the [`Classified`] trait every engine error enum
//! implements. This module depends on no other: every engine module may use it.

/// The fix for an engine error, as a face can act on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Remedy {
    /// Replace the entities (or the slot) that already exist.
    Replace,
    /// Overwrite the files that already exist, or write elsewhere.
    Overwrite,
    /// Give the password of the PKCS#12 file or key (or a correct one).
    Password,
    /// Pick another issuing CA.
    Issuer,
    /// Give the new CA another path length.
    Pathlen,
    /// Give the certificate a common name.
    CommonName,
    /// Give a validity window that is not empty and not over-determined.
    Validity,
    /// Give the CRL a validity of at least one day.
    CrlDays,
    /// Use another workspace directory.
    Workspace,
    /// Write into another (existing) directory.
    OutDir,
    /// Name the entity explicitly.
    Name,
    /// Write one format only when writing to standard output.
    OneFormat,
    /// Renew with a new key.
    Rekey,
    /// Sign a certificate request (made on the device) instead.
    SignCsr,
    /// Bring the issuing CA into the workspace with its key first.
    ImportIssuer,
    /// Export the certificates only (PEM), since there is no key.
    CertificatesOnly,
    /// Pick a root or intermediate CA of the workspace.
    PickCa,
    /// Pick a device of the workspace.
    PickDevice,
    /// Register the CA with the hub (or DPS) first.
    RegisterCa,
    /// Register the device with the hub first.
    RegisterDevice,
    /// Remove the CA's certificate from the hub (or DPS) first.
    UnregisterCa,
    /// Remove the device from the hub first.
    UnregisterDevice,
    /// Give a self-signed device its thumbprints, or a workspace device to take them from.
    Thumbprints,
    /// Take the thumbprint from the device's certificate.
    CopyThumbprint,
    /// A device authenticated by CA takes no thumbprints: give none, or make it self-signed.
    NoThumbprints,
    /// Make a verification certificate with the CA's current code, signed by the CA's key.
    VerificationCertificate,
    /// Give the sample the hub's CA file instead of the system trust store.
    HubCaFile,
    /// Start the local hub.
    StartHub,
    /// List the workspace's entities to see what exists.
    ListEntities,
    /// Make a root CA of that name to issue with (the error names it).
    MakeRoot,
    /// Create a workspace in that directory (the error names it).
    InitWorkspace,
    /// Look at the entities' details: their issuer, key and thumbprint slots.
    ShowEntity,
    /// Make the weak key as a negative fixture from a spec (the only place chainsmith makes one).
    WeakKeyFixture,
    /// Listen on another port, or stop what uses this one.
    Port,
    /// Issue devices (with their keys) under the CA first (the error names it).
    IssueDevices,
    /// Name the shard (the K-th of N) explicitly.
    Shard,
    /// Write into a new or empty directory: nothing there is ever overwritten.
    NewOutDir,
    /// Test the device with its certificate and key files (its key is not in the workspace).
    DeviceFiles,
    /// Restart the local hub with the listener of that transport on (the error names it).
    HubTransport,
}

/// What every engine error enum offers a face: a stable kind for `--json` and its remedy.
/// (Each enum also has them as inherent methods, so callers need not import this trait.)
pub trait Classified: std::error::Error {
    /// A short machine-friendly name for `--json` errors.
    fn kind(&self) -> &'static str;
    /// What would fix it, for a face to turn into its own hint.
    fn remedy(&self) -> Option<Remedy>;
}
