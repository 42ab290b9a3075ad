//! A tiny DER tree, enough to change one INTEGER of a real PKCS#12 or PKCS#8 file and
//! re-encode it (shared by the bounds tests and `benches/bounds.rs`).

/// One DER node: its tag and either its content bytes or its children.
pub enum Der {
    /// A primitive node (tag, content).
    Prim(u8, Vec<u8>),
    /// A constructed node (tag, children).
    Cons(u8, Vec<Der>),
}

/// The nodes of `b`, in order (panics on malformed DER: the input is a file a test made).
pub fn der_parse(mut b: &[u8]) -> Vec<Der> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let tag = b[0];
        let (len, hdr) = if b[1] < 0x80 {
            (usize::from(b[1]), 2)
        } else {
            let n = usize::from(b[1] & 0x7f);
            (
                b[2..2 + n]
                    .iter()
                    .fold(0usize, |a, x| (a << 8) | usize::from(*x)),
                2 + n,
            )
        };
        let body = &b[hdr..hdr + len];
        out.push(if tag & 0x20 != 0 {
            Der::Cons(tag, der_parse(body))
        } else {
            Der::Prim(tag, body.to_vec())
        });
        b = &b[hdr + len..];
    }
    out
}

/// `nodes` encoded again, with definite lengths.
pub fn der_encode(nodes: &[Der]) -> Vec<u8> {
    let mut out = Vec::new();
    for n in nodes {
        let (tag, body) = match n {
            Der::Prim(t, b) => (*t, b.clone()),
            Der::Cons(t, c) => (*t, der_encode(c)),
        };
        out.push(tag);
        if body.len() < 0x80 {
            out.push(body.len() as u8);
        } else {
            let be = (body.len() as u32).to_be_bytes();
            let skip = be.iter().take_while(|x| **x == 0).count();
            out.push(0x80 | (4 - skip) as u8);
            out.extend(&be[skip..]);
        }
        out.extend(body);
    }
    out
}

/// Replace the first INTEGER 2048 under `node` with 2^31 - 1.
pub fn bump_iterations(node: &mut Der) -> bool {
    match node {
        Der::Prim(0x02, b) if b.as_slice() == [0x08, 0x00] => {
            *b = vec![0x7f, 0xff, 0xff, 0xff];
            true
        }
        Der::Prim(..) => false,
        Der::Cons(_, c) => c.iter_mut().any(bump_iterations),
    }
}

/// `pfx` (made with 2048 MAC iterations) with its MAC iteration count set to 2^31 - 1.
pub fn stall_pfx_mac(pfx: &[u8]) -> Vec<u8> {
    let mut tree = der_parse(pfx);
    let Der::Cons(_, top) = &mut tree[0] else {
        panic!("PFX is a SEQUENCE")
    };
    assert!(bump_iterations(&mut top[2]), "MacData has 2048 iterations");
    der_encode(&tree)
}
