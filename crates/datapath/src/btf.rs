//! A reader of the BTF (BPF Type Format) the compiler writes into the `.BTF` section of a BPF
//! object, for the ABI tests: struct layouts, and the map definitions of the `.maps` section.
//!
//! aya-obj parses BTF too, but keeps struct members private; the format is small (a header, a
//! type section, a string section: see the kernel's Documentation/bpf/btf.rst), so the part the
//! tests need is read here.

use std::collections::BTreeMap;

const BTF_MAGIC: u16 = 0xeb9f;

/// One BTF type, as far as the tests look into it. Type id 0 is `void`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Type {
    Void,
    Int {
        name: String,
        size: u32,
    },
    Ptr {
        target: u32,
    },
    Array {
        elem: u32,
        nelems: u32,
    },
    Struct(Struct),
    Union(Struct),
    Enum {
        name: String,
        size: u32,
    },
    /// `typedef`: resolved through for sizes.
    Typedef {
        name: String,
        target: u32,
    },
    /// `const`, `volatile`, `restrict`, type tags: resolved through for sizes.
    Qualifier {
        target: u32,
    },
    Var {
        name: String,
        target: u32,
    },
    Datasec {
        name: String,
        vars: Vec<u32>,
    },
    Float {
        name: String,
        size: u32,
    },
    /// Kinds the tests never look into (functions, forward declarations, declaration tags).
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Struct {
    /// Empty for an anonymous struct (map definitions are).
    pub name: String,
    pub size: u32,
    pub members: Vec<Member>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Member {
    pub name: String,
    pub type_id: u32,
    /// Offset from the start of the struct, in bits.
    pub bit_offset: u32,
    /// Bit-field width; 0 for a whole member.
    pub bitfield_size: u32,
}

/// A map of the `.maps` section: `__uint(type, ..)`, `__type(key, ..)` and the others become
/// members of an anonymous struct, with the numbers encoded as array lengths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MapDef {
    pub name: String,
    pub map_type: u32,
    pub max_entries: u32,
    /// Key and value sizes; `None` for maps without (ring buffers).
    pub key_size: Option<u64>,
    pub value_size: Option<u64>,
    /// The struct names of key and value, when they are structs.
    pub key_struct: Option<String>,
    pub value_struct: Option<String>,
}

#[derive(Debug)]
pub(crate) struct Btf {
    types: Vec<Type>,
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, String> {
    b.get(at..at + 2).map(|s| u16::from_le_bytes([s[0], s[1]])).ok_or_else(|| format!("BTF truncated at {at}"))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, String> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| format!("BTF truncated at {at}"))
}

impl Btf {
    /// The BTF of a BPF object (an ELF file built with `clang -g -target bpf`).
    pub(crate) fn from_elf(elf: &[u8]) -> Result<Btf, String> {
        use object::{Object, ObjectSection};
        let file = object::File::parse(elf).map_err(|e| format!("not an ELF object: {e}"))?;
        let section = file.section_by_name(".BTF").ok_or("no .BTF section (built without -g?)")?;
        let data = section.data().map_err(|e| format!("reading .BTF: {e}"))?;
        Btf::parse(data)
    }

    /// Parses a little-endian `.BTF` section (BPF objects are built for the host, x86_64 or arm64).
    pub(crate) fn parse(b: &[u8]) -> Result<Btf, String> {
        if u16_at(b, 0)? != BTF_MAGIC {
            return Err("bad BTF magic (not little-endian BTF)".into());
        }
        let hdr_len = u32_at(b, 4)? as usize;
        let (type_off, type_len) = (u32_at(b, 8)? as usize, u32_at(b, 12)? as usize);
        let (str_off, str_len) = (u32_at(b, 16)? as usize, u32_at(b, 20)? as usize);
        let strings =
            b.get(hdr_len + str_off..hdr_len + str_off + str_len).ok_or("BTF string section out of bounds")?;
        let types = b.get(hdr_len + type_off..hdr_len + type_off + type_len).ok_or("BTF type section out of bounds")?;
        let name = |off: u32| -> Result<String, String> {
            let rest = strings.get(off as usize..).ok_or_else(|| format!("BTF string offset {off} out of bounds"))?;
            let end = rest.iter().position(|&c| c == 0).ok_or("BTF string without NUL")?;
            Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
        };

        let mut out = vec![Type::Void];
        let mut at = 0;
        while at < types.len() {
            let name_off = u32_at(types, at)?;
            let info = u32_at(types, at + 4)?;
            let size_or_type = u32_at(types, at + 8)?;
            at += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let ty = match kind {
                1 => {
                    at += 4; // encoding, offset, bits
                    Type::Int { name: name(name_off)?, size: size_or_type }
                }
                2 => Type::Ptr { target: size_or_type },
                3 => {
                    let ty = Type::Array { elem: u32_at(types, at)?, nelems: u32_at(types, at + 8)? };
                    at += 12;
                    ty
                }
                4 | 5 => {
                    let mut members = Vec::with_capacity(vlen);
                    for _ in 0..vlen {
                        let offset = u32_at(types, at + 8)?;
                        let (bit_offset, bitfield_size) =
                            if kind_flag { (offset & 0xff_ffff, offset >> 24) } else { (offset, 0) };
                        members.push(Member {
                            name: name(u32_at(types, at)?)?,
                            type_id: u32_at(types, at + 4)?,
                            bit_offset,
                            bitfield_size,
                        });
                        at += 12;
                    }
                    let s = Struct { name: name(name_off)?, size: size_or_type, members };
                    if kind == 4 { Type::Struct(s) } else { Type::Union(s) }
                }
                6 => {
                    at += 8 * vlen;
                    Type::Enum { name: name(name_off)?, size: size_or_type }
                }
                7 | 12 => Type::Other, // forward declaration, function
                8 => Type::Typedef { name: name(name_off)?, target: size_or_type },
                9..=11 | 18 => Type::Qualifier { target: size_or_type },
                13 => {
                    at += 8 * vlen; // function prototype parameters
                    Type::Other
                }
                14 => {
                    at += 4; // linkage
                    Type::Var { name: name(name_off)?, target: size_or_type }
                }
                15 => {
                    let mut vars = Vec::with_capacity(vlen);
                    for _ in 0..vlen {
                        vars.push(u32_at(types, at)?);
                        at += 12;
                    }
                    Type::Datasec { name: name(name_off)?, vars }
                }
                16 => Type::Float { name: name(name_off)?, size: size_or_type },
                17 => {
                    at += 4; // component index of a declaration tag
                    Type::Other
                }
                19 => {
                    at += 12 * vlen;
                    Type::Enum { name: name(name_off)?, size: size_or_type }
                }
                other => return Err(format!("unknown BTF kind {other} at type {}", out.len())),
            };
            out.push(ty);
        }
        Ok(Btf { types: out })
    }

    pub(crate) fn get(&self, id: u32) -> Result<&Type, String> {
        self.types.get(id as usize).ok_or_else(|| format!("no BTF type {id}"))
    }

    /// `id` with typedefs and qualifiers resolved.
    pub(crate) fn resolve(&self, mut id: u32) -> Result<u32, String> {
        for _ in 0..32 {
            match self.get(id)? {
                Type::Typedef { target, .. } | Type::Qualifier { target } => id = *target,
                _ => return Ok(id),
            }
        }
        Err(format!("BTF type {id}: typedef chain too long"))
    }

    /// Size in bytes of type `id`, as `sizeof` in C.
    pub(crate) fn size_of(&self, id: u32) -> Result<u64, String> {
        match self.get(self.resolve(id)?)? {
            Type::Int { size, .. } | Type::Enum { size, .. } | Type::Float { size, .. } => Ok(u64::from(*size)),
            Type::Struct(s) | Type::Union(s) => Ok(u64::from(s.size)),
            Type::Ptr { .. } => Ok(8),
            Type::Array { elem, nelems } => Ok(u64::from(*nelems) * self.size_of(*elem)?),
            other => Err(format!("BTF type {id} has no size: {other:?}")),
        }
    }

    /// A C spelling of type `id` for messages: `__u32`, `struct lb4_key`, `__u8[6]`.
    pub(crate) fn type_name(&self, id: u32) -> String {
        match self.get(id) {
            Ok(Type::Void) => "void".into(),
            Ok(Type::Int { name, .. } | Type::Typedef { name, .. } | Type::Float { name, .. }) => name.clone(),
            Ok(Type::Enum { name, .. }) => format!("enum {name}"),
            Ok(Type::Struct(s)) => format!("struct {}", s.name),
            Ok(Type::Union(s)) => format!("union {}", s.name),
            Ok(Type::Ptr { target }) => format!("{} *", self.type_name(*target)),
            Ok(Type::Array { elem, nelems }) => format!("{}[{nelems}]", self.type_name(*elem)),
            Ok(Type::Qualifier { target }) => self.type_name(*target),
            _ => format!("type {id}"),
        }
    }

    /// Every named struct, by name.
    pub(crate) fn structs(&self) -> BTreeMap<&str, &Struct> {
        self.types
            .iter()
            .filter_map(|t| match t {
                Type::Struct(s) if !s.name.is_empty() => Some((s.name.as_str(), s)),
                _ => None,
            })
            .collect()
    }

    /// The maps defined in the object's `.maps` section (libbpf's BTF-defined maps).
    pub(crate) fn maps(&self) -> Result<Vec<MapDef>, String> {
        let Some(vars) = self.types.iter().find_map(|t| match t {
            Type::Datasec { name, vars } if name == ".maps" => Some(vars),
            _ => None,
        }) else {
            return Ok(Vec::new());
        };
        vars.iter().map(|&var| self.map_def(var)).collect()
    }

    fn map_def(&self, var: u32) -> Result<MapDef, String> {
        let Type::Var { name, target } = self.get(var)? else {
            return Err(format!("BTF type {var} in .maps is not a variable"));
        };
        let Type::Struct(def) = self.get(self.resolve(*target)?)? else {
            return Err(format!("map {name}: definition is not a struct"));
        };
        // `__uint(name, n)` is `int (*name)[n]`; `__type(name, T)` is `typeof(T) *name`.
        let pointee = |field: &str| -> Result<Option<u32>, String> {
            let Some(m) = def.members.iter().find(|m| m.name == field) else { return Ok(None) };
            match self.get(self.resolve(m.type_id)?)? {
                Type::Ptr { target } => Ok(Some(*target)),
                other => Err(format!("map {name}: member {field} is not a pointer: {other:?}")),
            }
        };
        let number = |field: &str| -> Result<u32, String> {
            let Some(target) = pointee(field)? else { return Ok(0) };
            match self.get(target)? {
                Type::Array { nelems, .. } => Ok(*nelems),
                other => Err(format!("map {name}: member {field} does not point to an array: {other:?}")),
            }
        };
        let struct_name = |id: Option<u32>| -> Result<Option<String>, String> {
            Ok(match id {
                Some(id) => match self.get(self.resolve(id)?)? {
                    Type::Struct(s) => Some(s.name.clone()),
                    _ => None,
                },
                None => None,
            })
        };
        let (key, value) = (pointee("key")?, pointee("value")?);
        Ok(MapDef {
            name: name.clone(),
            map_type: number("type")?,
            max_entries: number("max_entries")?,
            key_size: key.map(|k| self.size_of(k)).transpose()?,
            value_size: value.map(|v| self.size_of(v)).transpose()?,
            key_struct: struct_name(key)?,
            value_struct: struct_name(value)?,
        })
    }
}
