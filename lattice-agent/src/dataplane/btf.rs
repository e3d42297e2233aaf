//! Member offsets of kernel structs from the running kernel's BTF
//! (`/sys/kernel/btf/vmlinux`): the layout facts the sk_msg program needs to read a few
//! fields of `struct tcp_sock` and `struct sock` (aya-ebpf has no CO-RE relocations, so
//! the agent finds the offsets and writes them into a map).

use std::path::Path;

use super::DataplaneError;

/// Where the running kernel describes its types.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// BTF kinds this reader looks at.
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
/// Kinds that only qualify another type (`type` field): typedef, volatile, const,
/// restrict, type tag.
const QUALIFIERS: [u32; 5] = [8, 9, 10, 11, 18];

/// One type of the blob, as far as offsets need it.
#[derive(Debug, Default, Clone)]
struct Type {
    kind: u32,
    name: String,
    /// The qualified type, for qualifiers.
    refers_to: u32,
    /// Members of a struct or union: name, type id, bit offset.
    members: Vec<(String, u32, u32)>,
}

/// The types of a BTF blob (index = type id; id 0 is void).
#[derive(Debug)]
pub struct KernelTypes {
    types: Vec<Type>,
}

impl KernelTypes {
    /// Reads and parses the BTF at `path`.
    pub fn read(path: &Path) -> Result<KernelTypes, DataplaneError> {
        let data = std::fs::read(path).map_err(|source| DataplaneError::Fs {
            op: "reading",
            path: path.to_path_buf(),
            source,
        })?;
        KernelTypes::parse(&data).map_err(|message| btf_error(path, message))
    }

    /// Parses a little-endian BTF blob (the kernel's own on this host).
    pub fn parse(data: &[u8]) -> Result<KernelTypes, String> {
        let u32_at = |o: usize| -> Result<u32, String> {
            data.get(o..o + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| "truncated".to_owned())
        };
        if data.get(0..2) != Some(&0xeb9fu16.to_le_bytes()[..]) {
            return Err("not little-endian BTF (bad magic)".into());
        }
        let hdr_len = u32_at(4)? as usize;
        let (type_off, type_len) = (u32_at(8)? as usize, u32_at(12)? as usize);
        let (str_off, str_len) = (u32_at(16)? as usize, u32_at(20)? as usize);
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or("truncated string section")?;
        let name = |off: u32| -> String {
            let rest = strings.get(off as usize..).unwrap_or_default();
            let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            String::from_utf8_lossy(&rest[..end]).into_owned()
        };
        let mut types = vec![Type::default()];
        let mut at = hdr_len + type_off;
        let end = hdr_len + type_off + type_len;
        while at < end {
            let (name_off, info, size_or_type) = (u32_at(at)?, u32_at(at + 4)?, u32_at(at + 8)?);
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let bitfields = info >> 31 == 1;
            at += 12;
            let mut t = Type {
                kind,
                name: name(name_off),
                refers_to: size_or_type,
                members: Vec::new(),
            };
            let extra = match kind {
                // INT, VAR, DECL_TAG
                1 | 14 | 17 => 4,
                // ARRAY
                3 => 12,
                // STRUCT, UNION
                KIND_STRUCT | KIND_UNION => {
                    for m in 0..vlen {
                        let m_at = at + 12 * m;
                        let raw = u32_at(m_at + 8)?;
                        let bits = if bitfields { raw & 0x00ff_ffff } else { raw };
                        t.members
                            .push((name(u32_at(m_at)?), u32_at(m_at + 4)?, bits));
                    }
                    12 * vlen
                }
                // DATASEC, ENUM64
                15 | 19 => 12 * vlen,
                // ENUM, FUNC_PROTO
                6 | 13 => 8 * vlen,
                // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG
                2 | 7 | 8 | 9 | 10 | 11 | 12 | 16 | 18 => 0,
                other => return Err(format!("unknown BTF kind {other}")),
            };
            at += extra;
            types.push(t);
        }
        Ok(KernelTypes { types })
    }

    /// The byte offset of the member at `path` (e.g. `["sk_backlog", "rmem_alloc"]`) in
    /// struct `strukt`; members of anonymous structs and unions are found as the C
    /// compiler finds them.
    pub fn offset(&self, strukt: &str, path: &[&str]) -> Result<u32, String> {
        let id = self
            .types
            .iter()
            .position(|t| t.kind == KIND_STRUCT && t.name == strukt)
            .ok_or_else(|| format!("no struct {strukt}"))?;
        let mut id = id as u32;
        let mut bits = 0;
        for (i, member) in path.iter().enumerate() {
            let (member_bits, member_type) = self.find_member(id, member, 0).ok_or_else(|| {
                format!("{strukt}.{} has no member {member}", path[..i].join("."))
            })?;
            bits += member_bits;
            id = self.resolve(member_type);
        }
        if bits % 8 != 0 || bits == 0 {
            return Err(format!("{strukt}.{} is at bit {bits}", path.join(".")));
        }
        Ok(bits / 8)
    }

    /// The bit offset and type of member `name` of struct or union `id`, looking into
    /// its anonymous members (bounded depth).
    fn find_member(&self, id: u32, name: &str, depth: usize) -> Option<(u32, u32)> {
        let t = self.types.get(id as usize)?;
        for (member, type_id, bits) in &t.members {
            if member == name {
                return Some((*bits, *type_id));
            }
        }
        if depth > 8 {
            return None;
        }
        t.members
            .iter()
            .filter(|(member, _, _)| member.is_empty())
            .find_map(|(_, type_id, bits)| {
                self.find_member(self.resolve(*type_id), name, depth + 1)
                    .map(|(b, ty)| (bits + b, ty))
            })
    }

    /// A type id with its qualifiers (typedef, const, ...) stripped.
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..16 {
            match self.types.get(id as usize) {
                Some(t) if QUALIFIERS.contains(&t.kind) => id = t.refers_to,
                _ => break,
            }
        }
        id
    }
}

fn btf_error(path: &Path, message: impl Into<String>) -> DataplaneError {
    DataplaneError::Command {
        command: format!("reading kernel types from {}", path.display()),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A blob: `int`, a union `u { int x; }`, `struct tcp_sock { int a; int write_seq;
    /// struct { int deep; } nested; union { int anon; }; }` (the anonymous struct type
    /// behind a typedef).
    fn blob() -> Vec<u8> {
        let strings = b"\0int\0u\0x\0tcp_sock\0a\0write_seq\0nested\0deep\0anon\0td\0";
        let off = |s: &str| {
            let needle = format!("\0{s}\0");
            strings
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
                .unwrap() as u32
                + 1
        };
        let mut types = Vec::new();
        let mut push = |v: &[u32]| {
            for x in v {
                types.extend_from_slice(&x.to_le_bytes());
            }
        };
        // [1] INT "int" size 4
        push(&[off("int"), 1 << 24, 4, 32]);
        // [2] UNION "u" { x: int at 0 }
        push(&[off("u"), (5 << 24) | 1, 4, off("x"), 1, 0]);
        // [3] STRUCT (anonymous) { deep: int at 0 }
        push(&[0, (4 << 24) | 1, 4, off("deep"), 1, 0]);
        // [4] TYPEDEF td -> 3
        push(&[off("td"), 8 << 24, 3]);
        // [5] UNION (anonymous) { anon: int at 0 }
        push(&[0, (5 << 24) | 1, 4, off("anon"), 1, 0]);
        // [6] STRUCT tcp_sock { a at 0, write_seq at 32, nested (td) at 64, (anon) at 96 }
        push(&[
            off("tcp_sock"),
            (4 << 24) | 4,
            16,
            off("a"),
            1,
            0,
            off("write_seq"),
            1,
            32,
            off("nested"),
            4,
            64,
            0,
            5,
            96,
        ]);
        let mut out = Vec::new();
        out.extend_from_slice(&0xeb9fu16.to_le_bytes());
        out.extend_from_slice(&[1, 0]);
        for v in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&types);
        out.extend_from_slice(strings);
        out
    }

    #[test]
    fn finds_member_offsets() {
        let t = KernelTypes::parse(&blob()).unwrap();
        assert_eq!(t.offset("tcp_sock", &["write_seq"]), Ok(4));
        assert_eq!(t.offset("tcp_sock", &["nested", "deep"]), Ok(8));
        assert_eq!(t.offset("tcp_sock", &["anon"]), Ok(12));
        // Offset 0 is refused: the program takes 0 for "unknown".
        assert!(t.offset("tcp_sock", &["a"]).is_err());
        assert!(t.offset("tcp_sock", &["nope"]).is_err());
        assert!(t.offset("sock", &["write_seq"]).is_err());
        assert!(KernelTypes::parse(&[0u8; 8]).is_err());
    }

    #[test]
    fn the_running_kernel_describes_the_fields_sk_msg_reads() {
        let t = KernelTypes::read(Path::new(VMLINUX_BTF)).expect("kernel BTF");
        for field in ["write_seq", "snd_una", "copied_seq", "rcv_nxt"] {
            // Far into the struct: it starts with struct inet_connection_sock.
            let off = t.offset("tcp_sock", &[field]).unwrap();
            assert!(off > 1000 && off < 8192, "{field} at {off}");
        }
        let rmem = t.offset("sock", &["sk_backlog", "rmem_alloc"]).unwrap();
        let rcvbuf = t.offset("sock", &["sk_rcvbuf"]).unwrap();
        assert!(rmem < 1024 && rcvbuf < 1024, "{rmem} {rcvbuf}");
    }
}
