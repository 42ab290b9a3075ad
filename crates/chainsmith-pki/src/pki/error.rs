//! The PKI core's errors, typed in the rustls style: each variant carries the facts (the value
//! given, the limit, the choices, the entity) and its `#[error]` says the sentence, so a caller
//! can match on what went wrong instead of reading a string. Families with many shapes have a
//! documented sub-enum of their own ([`SanError`], [`TimeError`], [`DeviceIdError`], ...).

use super::identity::{Target, char_name};
use super::issue::rfc3339;
use crate::error::Remedy;
use time::OffsetDateTime;

/// Everything that can go wrong in the engine, each message naming the value and the fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A word that is not one of the choices offered: a key algorithm, a target, an EKU, a
    /// SAN type (the message lists the choices).
    #[error(transparent)]
    UnknownChoice(#[from] UnknownChoice),
    /// A subject alternative name without a value or with a value of the wrong form, given
    /// or asked for by a CSR.
    #[error(transparent)]
    San(#[from] SanError),
    /// A time or validity length X.509 cannot express, that does not parse, or a window that
    /// ends before it starts.
    #[error(transparent)]
    Time(#[from] TimeError),
    /// A device or registration id (or an id range, or a list of ids) Azure would not take.
    #[error(transparent)]
    DeviceId(#[from] DeviceIdError),
    /// A proof-of-possession verification code that cannot be a certificate's CN.
    #[error(transparent)]
    VerificationCode(#[from] VerificationCodeError),
    /// An entity name that cannot be a file name in the workspace.
    #[error(
        "name \"{name}\" {problem}; names are file names in the workspace: use letters, digits and - . _"
    )]
    EntityName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        problem: EntityNameProblem,
    },
    /// A subject (`CN=…,O=…`) that does not parse or breaks RFC 5280's limits.
    #[error(transparent)]
    Subject(#[from] SubjectError),
    /// A PKCS#12 file that is damaged, uses an algorithm OpenSSL 3 does not read, or asks for
    /// an unreasonable amount of work.
    #[error(transparent)]
    Pkcs12(#[from] Pkcs12Error),
    /// A CA that cannot sign here: no key (trust-only), a key that is not its certificate's,
    /// or no issuer at all where one is needed.
    #[error(transparent)]
    CannotSign(#[from] CannotSignError),
    /// A check of chainsmith's own work failed: a bug to report, not a mistake of the user.
    #[error(transparent)]
    Internal(#[from] InternalError),
    /// Bytes that do not parse as what they should be.
    #[error("{what}: {detail}")]
    Parse {
        /// What was read.
        what: String,
        /// The parser's words.
        detail: String,
    },
    /// The chosen issuer cannot issue this certificate (not a CA, or the certificate itself).
    #[error(transparent)]
    Issuer(#[from] IssuerError),
    /// A CA's path length does not allow the chain asked for.
    #[error(transparent)]
    Pathlen(#[from] PathlenError),
    /// A certificate without a CN.
    #[error("CN is empty; give a name such as \"Contoso Root\" (or none, to use the entity name)")]
    EmptyCn,
    /// A validity window that is empty or over-determined.
    #[error(transparent)]
    Validity(#[from] ValidityError),
    /// A password is missing, or cannot open the file.
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error(
        "the CSR's subject has no CN; name the entity, and make device CSRs with CN = the device id"
    )]
    /// A CSR whose subject has no CN.
    CsrWithoutCn,
    /// A CSR whose subject asks for more than one identity or for attributes a device
    /// certificate does not carry (`problem` says which).
    #[error(
        "the CSR's subject {problem}; a device CSR's subject is one CN (the device id) and at most one each of O, OU, L, ST and C: make it again with -subj /CN=ID"
    )]
    CsrSubject {
        /// What is wrong with it, with the values (escaped).
        problem: String,
    },
    /// A CSR whose key chainsmith will not certify (`key` names it: `RSA-1024`, `EC on curve
    /// secp112r1`, `EC with explicit curve parameters`).
    #[error(
        "the CSR's key is {key}, which hubs and OpenSSL 3 refuse or which chainsmith does not issue for; make the key again on the device as EC P-256 (openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256) or RSA 2048 or larger"
    )]
    CsrKey {
        /// The key as described above.
        key: String,
    },
    /// A CSR whose signature does not verify against its own public key.
    #[error(
        "the CSR's signature does not verify against its own public key: the request was altered or corrupted; make it again on the device"
    )]
    CsrSignature,
    /// The PFX password does not open the file.
    #[error(
        "the password for {file} is wrong (the PKCS#12 MAC does not verify); check the password"
    )]
    WrongPassword {
        /// The file, as the user named it.
        file: String,
    },
    /// The password does not decrypt an encrypted PEM private key (PKCS#8 `ENCRYPTED PRIVATE
    /// KEY` or OpenSSL's traditional `Proc-Type: 4,ENCRYPTED`).
    #[error(
        "the password for the encrypted key in {file} is wrong (the key does not decrypt with it); give the password the key file was encrypted with"
    )]
    WrongKeyPassword {
        /// The file that holds the key.
        file: String,
    },
    /// rcgen could not make the certificate.
    #[error("certificate generation failed: {0}")]
    Generation(#[from] rcgen::Error),
    /// OpenSSL refused an operation.
    #[error("OpenSSL: {0}")]
    OpenSsl(#[from] openssl::error::ErrorStack),
    /// RSA-1024, which no hub accepts: chainsmith makes such a key only as a negative fixture.
    #[error(
        "key algorithm \"rsa-1024\" is too weak: hubs and OpenSSL 3 refuse it; use ec-p256 or rsa-2048 (for a negative test, a spec's weak_key fixture makes one)"
    )]
    WeakKey,
}

/// A word that is not one of the choices offered; the message lists them.
#[derive(Debug, thiserror::Error)]
pub enum UnknownChoice {
    /// A key algorithm.
    #[error("unknown key algorithm \"{given}\"; choose one of: {}", .choices.join(", "))]
    KeyAlg {
        /// The word given.
        given: String,
        /// The algorithms chainsmith makes keys for.
        choices: &'static [&'static str],
    },
    /// A target whose rules device ids follow.
    #[error("unknown target \"{given}\"; choose one of: {}", .choices.join(", "))]
    Target {
        /// The word given.
        given: String,
        /// The targets.
        choices: &'static [&'static str],
    },
    /// An extended key usage (or combination) chainsmith does not issue.
    #[error("EKU \"{given}\" is not supported; use client (what hubs need) or client,server")]
    Eku {
        /// The usage given.
        given: String,
    },
    /// A subject alternative name's type (before the `:`).
    #[error("SAN type \"{given}\" is not supported; use DNS:, IP:, URI: or email:")]
    SanType {
        /// The type given.
        given: String,
    },
}

/// A subject alternative name that cannot go into a certificate.
#[derive(Debug, thiserror::Error)]
pub enum SanError {
    /// `TYPE:` with nothing after it.
    #[error("SAN \"{given}\" has no value; write it like DNS:dev1.example.com")]
    NoValue {
        /// The SAN as given.
        given: String,
    },
    /// An `IP:` SAN whose value is not an IPv4 or IPv6 address.
    #[error("SAN \"{given}\": \"{value}\" is not an IP address")]
    NotAnIp {
        /// The SAN as given.
        given: String,
        /// Its value.
        value: String,
    },
    /// A CSR's DNS name that is neither the device id nor a host name.
    #[error(
        "the CSR asks for DNS name {name:?}, which is neither the device id nor a host name (letters, digits and - in dot-separated labels, no wildcard)"
    )]
    CsrDnsName {
        /// The name the CSR asks for.
        name: String,
    },
    /// A CSR's URI that is not an absolute URI.
    #[error(
        "the CSR asks for URI {uri:?}, which is not an absolute URI (scheme:rest, ASCII, no spaces)"
    )]
    CsrUri {
        /// The URI the CSR asks for.
        uri: String,
    },
}

/// A time X.509 cannot carry, one that does not parse, or a window that ends before it starts.
#[derive(Debug, thiserror::Error)]
pub enum TimeError {
    /// Before [`super::issue::EARLIEST`].
    #[error(
        "{what} {} is before 1950-01-01T00:00:00Z, the earliest time chainsmith writes (RFC 5280 UTCTime starts in 1950); pick a later time",
        rfc3339(*.at)
    )]
    BeforeEarliest {
        /// Which time ("not-before", "not-after").
        what: &'static str,
        /// The time given.
        at: OffsetDateTime,
    },
    /// After [`super::issue::LATEST`].
    #[error(
        "{what} {} is after 9999-12-31T23:59:59Z, the latest time X.509 can express (RFC 5280 GeneralizedTime); pick an earlier time",
        rfc3339(*.at)
    )]
    AfterLatest {
        /// Which time ("not-before", "not-after").
        what: &'static str,
        /// The time given.
        at: OffsetDateTime,
    },
    /// A length in days that ends after [`super::issue::LATEST`].
    #[error(
        "{days} days from {} ends after 9999-12-31T23:59:59Z, the latest time X.509 can express (RFC 5280 GeneralizedTime); {what} may last at most {most} days",
        rfc3339(*.start)
    )]
    TooManyDays {
        /// What would last that long ("a certificate", "a CRL").
        what: &'static str,
        /// The start, to the second.
        start: OffsetDateTime,
        /// The days asked for.
        days: u32,
        /// The most days from `start` X.509 can express.
        most: i64,
    },
    /// A not-after that is not later than the not-before.
    #[error(
        "not-after {} is not later than not-before {}; swap them or widen the window",
        rfc3339(*.not_after),
        rfc3339(*.not_before)
    )]
    Reversed {
        /// The start given.
        not_before: OffsetDateTime,
        /// The end given.
        not_after: OffsetDateTime,
    },
    /// Text that is not an RFC 3339 timestamp.
    #[error("\"{given}\" is not an RFC 3339 time ({source}); write it like 2025-01-31T12:00:00Z")]
    NotRfc3339 {
        /// The text given.
        given: String,
        /// Why it does not parse.
        source: time::error::Parse,
    },
}

/// A device or registration id, an id range or a list of ids that Azure would not take.
#[derive(Debug, thiserror::Error)]
pub enum DeviceIdError {
    /// No id at all.
    #[error("device id is empty; give the id the device connects with")]
    Empty,
    /// A character the target's rules do not allow.
    #[error(
        "device id \"{id}\" has {} at position {position}; {} {}",
        char_name(*.found),
        .target.rule_name(),
        .target.allowed_description()
    )]
    Character {
        /// The id.
        id: String,
        /// The character.
        found: char,
        /// Where it is, counting characters from 1.
        position: usize,
        /// Whose rules were checked.
        target: Target,
    },
    /// Longer than a certificate's CN can hold.
    #[error(
        "device id \"{id}\" is {len} characters long; a certificate CN holds at most {max}{}",
        if *.target == Target::Hub {
            " (IoT Hub allows 128 characters, but an X.509 device's id must fit in its certificate's CN)"
        } else {
            ""
        }
    )]
    TooLong {
        /// The id.
        id: String,
        /// Its length in characters.
        len: usize,
        /// The most a CN holds (RFC 5280).
        max: usize,
        /// Whose rules were checked.
        target: Target,
    },
    /// A DPS registration id whose last character DPS refuses.
    #[error(
        "registration id \"{id}\" ends with '{last}'; DPS needs the last character to be a letter, digit or -"
    )]
    DpsLastCharacter {
        /// The id.
        id: String,
        /// Its last character.
        last: char,
    },
    /// An id range (`dev-{001..500}`) that does not expand.
    #[error(
        "id range \"{pattern}\" {problem}; write it like dev-{{001..500}} (inclusive, ascending)"
    )]
    Range {
        /// The range as given.
        pattern: String,
        /// What is wrong with it.
        problem: RangeProblem,
    },
    /// An empty list of ids.
    #[error("no device id given; pass one or more ids, or a range like dev-{{001..100}}")]
    NoneGiven,
    /// The same id twice in one list.
    #[error("device id \"{id}\" is given twice")]
    Twice {
        /// The id.
        id: String,
    },
}

/// What is wrong with an id range.
#[derive(Debug, thiserror::Error)]
pub enum RangeProblem {
    /// `{` without `}`.
    #[error("has no closing '}}'")]
    NoClosingBrace,
    /// A second `{` after the range.
    #[error("has more than one range")]
    SeveralRanges,
    /// No `..` between the bounds.
    #[error("needs '..' between the bounds")]
    NoDots,
    /// A bound that is not a number.
    #[error("has a bound \"{bound}\" that is not a number")]
    NotANumber {
        /// The bound as given.
        bound: String,
    },
    /// The first bound is above the second.
    #[error("counts downwards")]
    Downwards,
    /// More ids than [`super::identity::MAX_RANGE_IDS`].
    #[error("has more than 1,000,000 ids")]
    TooMany,
}

/// A proof-of-possession verification code that cannot be a certificate's CN.
#[derive(Debug, thiserror::Error)]
pub enum VerificationCodeError {
    /// No code at all.
    #[error(
        "verification code is empty; copy the code the hub shows for the CA (Azure's are 48 hex characters)"
    )]
    Empty,
    /// Longer than a CN holds.
    #[error(
        "verification code \"{code}\" is {len} characters long; a code must fit a certificate CN (at most {max}); check that you copied only the code"
    )]
    TooLong {
        /// The code.
        code: String,
        /// Its length in characters.
        len: usize,
        /// The most a CN holds (RFC 5280).
        max: usize,
    },
    /// A character that is not printable ASCII.
    #[error(
        "verification code \"{code}\" has {} at position {position}; codes are printable characters only (Azure's are 48 hex characters)",
        char_name(*.found)
    )]
    Character {
        /// The code.
        code: String,
        /// The character.
        found: char,
        /// Where it is, counting characters from 1.
        position: usize,
    },
}

/// Why a name cannot be a workspace entity's directory name.
#[derive(Debug, thiserror::Error)]
pub enum EntityNameProblem {
    /// No name at all.
    #[error("is empty")]
    Empty,
    /// A hidden file's name.
    #[error("starts with '.'")]
    LeadingDot,
    /// Longer than [`super::identity::MAX_ENTITY_NAME`] bytes.
    #[error("is {len} bytes long (at most {max})")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// A path separator or control character.
    #[error("contains {}", char_name(*.0))]
    Character(char),
}

/// A subject (`CN=…,O=…`) that does not parse or breaks RFC 5280's limits.
#[derive(Debug, thiserror::Error)]
pub enum SubjectError {
    /// A part without `=`.
    #[error(
        "subject part \"{part}\" has no '='; write the subject like \"CN=Contoso Root,O=Contoso,C=US\""
    )]
    NoEquals {
        /// The part.
        part: String,
    },
    /// An attribute chainsmith does not write.
    #[error("subject attribute \"{key}\" is not supported; use CN, O, OU, C, ST or L")]
    UnknownAttribute {
        /// The attribute, upper-cased.
        key: String,
    },
    /// `KEY=` with nothing after it.
    #[error("subject attribute {key} has an empty value")]
    EmptyValue {
        /// The attribute, upper-cased.
        key: String,
    },
    /// A country that is not two letters.
    #[error("country \"{value}\" must be a two-letter ISO code such as US or DE")]
    Country {
        /// The value given.
        value: String,
    },
    /// A CN, inside a subject, longer than RFC 5280 allows.
    #[error("CN \"{cn}\" is longer than {max} characters, the most RFC 5280 allows")]
    CnTooLongInSubject {
        /// The CN.
        cn: String,
        /// The most RFC 5280 allows.
        max: usize,
    },
    /// A subject without a CN.
    #[error("subject \"{subject}\" has no CN; add one, e.g. \"CN=Contoso Root,{subject}\"")]
    NoCn {
        /// The subject as given.
        subject: String,
    },
    /// A CN, given alone, longer than RFC 5280 allows.
    #[error("CN \"{cn}\" is {len} characters long; RFC 5280 allows at most {max}")]
    CnTooLong {
        /// The CN.
        cn: String,
        /// Its length in characters.
        len: usize,
        /// The most RFC 5280 allows.
        max: usize,
    },
}

/// A PKCS#12 file that is damaged, uses an algorithm OpenSSL 3 does not read, or asks for an
/// unreasonable amount of work.
#[derive(Debug, thiserror::Error)]
pub enum Pkcs12Error {
    /// More key-derivation iterations than [`super::pkcs12::MAX_ITERATIONS`].
    #[error(
        "{file} asks for {iterations} key-derivation iterations ({part}); chainsmith refuses more than {max} (OpenSSL writes 2048, Windows reads at most 600000), so the file is damaged or made to stall whoever opens it; re-export it with an ordinary count"
    )]
    TooManyIterations {
        /// The file, as the user named it.
        file: String,
        /// Which part asks for them ("MAC", "key", "certificates").
        part: &'static str,
        /// The count it asks for.
        iterations: u64,
        /// The most chainsmith runs.
        max: u64,
    },
    /// Bytes OpenSSL does not read as PKCS#12.
    #[error("{file} is not a PKCS#12 (PFX) file, or it is damaged")]
    NotPkcs12 {
        /// The file, as the user named it.
        file: String,
    },
    /// RC2-40, which OpenSSL 3 reads only with its legacy provider.
    #[error(
        "{file} is protected with RC2-40, which OpenSSL 3 does not read without its legacy provider; re-export it with AES or 3DES (e.g. `openssl pkcs12 -legacy -in OLD -nodes | openssl pkcs12 -export -out NEW`)"
    )]
    Rc2 {
        /// The file, as the user named it.
        file: String,
    },
    /// An ASN.1 structure that is not what RFC 7292 says.
    #[error("the PKCS#12 structure is malformed ({what})")]
    Malformed {
        /// Which element is wrong, and how.
        what: &'static str,
    },
    /// Bytes that are not DER at all.
    #[error("the PKCS#12 structure is malformed (not DER: {0})")]
    NotDer(#[source] x509_parser::nom::Err<x509_parser::asn1_rs::Error>),
}

/// A CA that cannot sign here.
#[derive(Debug, thiserror::Error)]
pub enum CannotSignError {
    /// A CA imported without its key.
    #[error(
        "CA \"{name}\" is trust-only (imported without its private key) and cannot issue; import it with its key to sign"
    )]
    TrustOnly {
        /// The CA.
        name: String,
    },
    /// A CA whose key is not its certificate's.
    #[error(
        "the private key of \"{name}\" does not match its certificate; re-import the CA with its own key"
    )]
    KeyMismatch {
        /// The CA.
        name: String,
    },
    /// A negative fixture that is signed by a CA, without one.
    #[error("negative fixture \"{fixture}\" needs an issuer")]
    FixtureWithoutIssuer {
        /// The fixture.
        fixture: String,
    },
    /// A spec item whose issuer was not loaded.
    #[error("issuer of \"{name}\" could not be loaded")]
    IssuerNotLoaded {
        /// The item to issue.
        name: String,
    },
}

/// A check of chainsmith's own work that failed: a bug to report.
#[derive(Debug, thiserror::Error)]
pub enum InternalError {
    /// A verification certificate chainsmith just made does not verify against its CA.
    #[error(
        "internal check failed: the verification certificate does not verify against \"{issuer}\""
    )]
    VerificationCertificate {
        /// The CA.
        issuer: String,
    },
    /// A serial chainsmith wrote that is not hex.
    #[error("serial: {0}")]
    Serial(#[source] hex::FromHexError),
}

/// An issuer that cannot issue this certificate.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    /// The issuer's certificate is no CA's.
    #[error(
        "\"{name}\" is not a CA (its certificate has no basicConstraints CA:TRUE) and cannot issue; pick a root or intermediate CA as the issuer"
    )]
    NotACa {
        /// The issuer.
        name: String,
    },
    /// A CA named as its own issuer.
    #[error("\"{name}\" cannot issue itself; pick its parent CA as the issuer")]
    Itself {
        /// The CA.
        name: String,
    },
}

/// A CA's path length that does not allow the chain asked for.
#[derive(Debug, thiserror::Error)]
pub enum PathlenError {
    /// Pathlen 0: no CA below it.
    #[error(
        "\"{ca}\" has pathlen 0, which allows no CA below it, so it cannot issue the intermediate \"{child}\"; re-issue \"{ca}\" with pathlen 1 (or more), or issue \"{child}\" from a CA higher up"
    )]
    Zero {
        /// The issuing CA.
        ca: String,
        /// The intermediate asked for.
        child: String,
    },
    /// A child pathlen not below the issuer's.
    #[error(
        "\"{ca}\" has pathlen {pathlen}, so \"{child}\" may have at most pathlen {max}; give it pathlen {max} or less"
    )]
    TooLong {
        /// The issuing CA.
        ca: String,
        /// Its pathlen.
        pathlen: u32,
        /// The intermediate asked for.
        child: String,
        /// The most the intermediate may have (`pathlen - 1`).
        max: u32,
    },
}

/// A validity window that is empty or over-determined.
#[derive(Debug, thiserror::Error)]
pub enum ValidityError {
    /// Zero days.
    #[error(
        "a validity of 0 days is empty: give at least 1 day; for an expired fixture give a not-after time in the past"
    )]
    ZeroDays,
    /// Days, not-before and not-after all given.
    #[error(
        "a length in days, a not-before and a not-after together over-determine the window; drop one"
    )]
    OverDetermined,
}

/// A password that is missing or does not open the file (read with `inspect`).
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// A PKCS#12 file read without a password.
    #[error("this is a PKCS#12 (PFX) file and it needs its password")]
    Pkcs12Needed,
    /// A PKCS#12 file the password does not open.
    #[error(
        "the PKCS#12 password is wrong (or the file uses an algorithm OpenSSL cannot read); check the password"
    )]
    Pkcs12WrongOrUnreadable,
}

impl Error {
    /// An [`Error::Parse`].
    pub fn parse(what: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        Error::Parse {
            what: what.into(),
            detail: detail.to_string(),
        }
    }

    /// A short machine-friendly name for `--json` errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::WrongPassword { .. } | Error::WrongKeyPassword { .. } => "wrong-password",
            Error::CsrSubject { .. } => "csr-subject",
            Error::CsrKey { .. } => "csr-key",
            Error::CsrSignature => "csr-signature",
            _ => "invalid",
        }
    }

    /// What would fix it, for a face to turn into its own hint.
    pub fn remedy(&self) -> Option<Remedy> {
        match self {
            Error::Issuer(_) => Some(Remedy::Issuer),
            Error::Pathlen(_) => Some(Remedy::Pathlen),
            Error::EmptyCn => Some(Remedy::CommonName),
            Error::CsrWithoutCn => Some(Remedy::Name),
            Error::Validity(_) => Some(Remedy::Validity),
            Error::Password(_) | Error::WrongPassword { .. } | Error::WrongKeyPassword { .. } => {
                Some(Remedy::Password)
            }
            Error::WeakKey => Some(Remedy::WeakKeyFixture),
            _ => None,
        }
    }
}

super::classified_by_inherent_methods!(Error);
