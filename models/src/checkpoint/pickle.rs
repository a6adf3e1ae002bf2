//! A pickle reader that interprets data only.
//!
//! It understands the opcodes `torch.save` writes (protocols 2–5) and builds plain values. Globals are
//! resolved against an allow-list (tensor rebuild functions, storage types, `OrderedDict`); any other
//! global is refused, so reading a checkpoint never executes or even names arbitrary code. Every length
//! is checked against the remaining input before anything is allocated.
//!
//! The memo holds values, not references: a container fetched from the memo is the container as it
//! was when memoized. `torch.save` memoizes containers before filling them but only fetches complete
//! objects (globals, storage records, tuples, tensors) again, so state dicts and training checkpoints
//! read correctly.

use crate::Problem;
use std::collections::HashMap;

/// Element type of a PyTorch storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageDtype {
    /// float32
    F32,
    /// float64
    F64,
    /// float16
    F16,
    /// bfloat16
    BF16,
    /// int64
    I64,
    /// int32
    I32,
    /// int16
    I16,
    /// int8
    I8,
    /// uint8
    U8,
    /// bool
    Bool,
}

impl StorageDtype {
    fn from_storage_class(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => Self::F32,
            "DoubleStorage" => Self::F64,
            "HalfStorage" => Self::F16,
            "BFloat16Storage" => Self::BF16,
            "LongStorage" => Self::I64,
            "IntStorage" => Self::I32,
            "ShortStorage" => Self::I16,
            "CharStorage" => Self::I8,
            "ByteStorage" => Self::U8,
            "BoolStorage" => Self::Bool,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 | Self::I16 => 2,
            Self::I8 | Self::U8 | Self::Bool => 1,
        }
    }
}

/// A reference to a storage, from a persistent id `('storage', type, key, location, numel)`.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageRef {
    /// Element type.
    pub dtype: StorageDtype,
    /// Key (zip: file name under `data/`; legacy: the id in the storage list).
    pub key: String,
    /// Number of elements.
    pub numel: usize,
}

/// A tensor view onto a storage (`torch._utils._rebuild_tensor_v2`).
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    /// The storage.
    pub storage: StorageRef,
    /// Element offset into the storage.
    pub offset: usize,
    /// Shape.
    pub shape: Vec<usize>,
    /// Strides in elements.
    pub stride: Vec<usize>,
}

/// A decoded pickle value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// A bool.
    Bool(bool),
    /// An int (larger ints are refused).
    Int(i64),
    /// A float.
    Float(f64),
    /// A str.
    Str(String),
    /// bytes.
    Bytes(Vec<u8>),
    /// A tuple.
    Tuple(Vec<Value>),
    /// A list.
    List(Vec<Value>),
    /// A dict or OrderedDict, in insertion order.
    Dict(Vec<(Value, Value)>),
    /// An allowed global (callable or class) not yet applied.
    Global(AllowedGlobal),
    /// A storage from a persistent id.
    Storage(StorageRef),
    /// A tensor.
    Tensor(TensorRef),
}

/// The globals a checkpoint may name.
#[derive(Debug, Clone, PartialEq)]
pub enum AllowedGlobal {
    /// `collections.OrderedDict`.
    OrderedDict,
    /// `torch._utils._rebuild_tensor_v2`.
    RebuildTensor,
    /// `torch._utils._rebuild_parameter`.
    RebuildParameter,
    /// A `torch.*Storage` class.
    StorageClass(StorageDtype),
}

fn resolve_global(module: &str, name: &str) -> Result<AllowedGlobal, Problem> {
    match (module, name) {
        ("collections", "OrderedDict") => Ok(AllowedGlobal::OrderedDict),
        ("torch._utils", "_rebuild_tensor_v2") => Ok(AllowedGlobal::RebuildTensor),
        ("torch._utils", "_rebuild_parameter") => Ok(AllowedGlobal::RebuildParameter),
        ("torch", class) if StorageDtype::from_storage_class(class).is_some() => Ok(AllowedGlobal::StorageClass(
            StorageDtype::from_storage_class(class).expect("checked"),
        )),
        _ => Err(Problem(format!(
            "refused pickle global '{module}.{name}': only tensor, storage and OrderedDict globals are allowed \
             (a checkpoint is data; loading it never runs code)"
        ))),
    }
}

/// Parses one pickle from the start of `data`; returns the value and the number of bytes it used.
pub fn parse(data: &[u8]) -> Result<(Value, usize), Problem> {
    Machine {
        data,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    }
    .run()
}

struct Machine<'d> {
    data: &'d [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
}

impl<'d> Machine<'d> {
    fn take(&mut self, n: usize) -> Result<&'d [u8], Problem> {
        if n > self.data.len() - self.pos {
            return Err(Problem(format!(
                "truncated pickle: needs {n} more bytes at offset {}, {} left",
                self.pos,
                self.data.len() - self.pos
            )));
        }
        let out = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, Problem> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Problem> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }

    fn u32(&mut self) -> Result<u32, Problem> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Result<u64, Problem> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    fn line(&mut self) -> Result<String, Problem> {
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .position(|&c| c == b'\n')
            .ok_or_else(|| format!("truncated pickle: unterminated line at offset {}", self.pos))?;
        let text = String::from_utf8(rest[..end].to_vec()).map_err(|_| "pickle line is not UTF-8".to_string())?;
        self.pos += end + 1;
        Ok(text)
    }

    fn pop(&mut self) -> Result<Value, Problem> {
        self.stack
            .pop()
            .ok_or_else(|| Problem(format!("malformed pickle: stack underflow at offset {}", self.pos)))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, Problem> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| format!("malformed pickle: no mark at offset {}", self.pos))?;
        if mark > self.stack.len() {
            return Err(Problem::from("malformed pickle: mark beyond stack"));
        }
        Ok(self.stack.split_off(mark))
    }

    fn top_mut(&mut self) -> Result<&mut Value, Problem> {
        let pos = self.pos;
        self.stack
            .last_mut()
            .ok_or_else(|| Problem(format!("malformed pickle: empty stack at offset {pos}")))
    }

    fn string(&mut self, len: usize) -> Result<Value, Problem> {
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec())
            .map(Value::Str)
            .map_err(|_| Problem::from("pickle string is not UTF-8"))
    }

    fn memo_get(&self, key: u32) -> Result<Value, Problem> {
        self.memo
            .get(&key)
            .cloned()
            .ok_or_else(|| Problem(format!("malformed pickle: memo key {key} undefined")))
    }

    fn memo_put(&mut self, key: u32) -> Result<(), Problem> {
        let top = self
            .stack
            .last()
            .cloned()
            .ok_or_else(|| "malformed pickle: memoize on empty stack".to_string())?;
        self.memo.insert(key, top);
        Ok(())
    }

    fn run(mut self) -> Result<(Value, usize), Problem> {
        loop {
            let at = self.pos;
            match self.u8()? {
                b'.' => {
                    let value = self.pop()?;
                    return Ok((value, self.pos));
                }
                op => self.step(op, at)?,
            }
        }
    }

    /// Executes one opcode other than STOP.
    fn step(&mut self, op: u8, at: usize) -> Result<(), Problem> {
        match op {
            0x80 | 0x95 | b'(' | b'0' | b'1' | b'2' => self.framing(op),
            b'q' | b'r' | 0x94 | b'h' | b'j' => self.memo_op(op),
            b'X' | 0x8c | 0x8d | b'C' | b'B' | b'J' | b'K' | b'M' | 0x8a | b'G' | b'N' | 0x88 | 0x89 => {
                self.literal(op)
            }
            b'}' | b']' | b')' | b't' | 0x85..=0x87 | b's' | b'u' | b'a' | b'e' => self.container(op, at),
            b'c' | 0x93 | b'R' | 0x81 | b'b' | b'Q' => self.object(op, at),
            other => Err(Problem(format!(
                "unsupported pickle opcode 0x{other:02x} at offset {at}"
            ))),
        }
    }

    /// Protocol, frame, mark and stack-housekeeping opcodes.
    fn framing(&mut self, op: u8) -> Result<(), Problem> {
        match op {
            0x80 => {
                self.u8()?; // PROTO
            }
            0x95 => {
                self.u64()?; // FRAME
            }
            b'(' => self.marks.push(self.stack.len()),
            b'0' => {
                self.pop()?;
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let top = self.top_mut()?.clone();
                self.stack.push(top);
            }

            _ => unreachable!("dispatched by `step`"),
        }
        Ok(())
    }

    /// Memo stores and loads.
    fn memo_op(&mut self, op: u8) -> Result<(), Problem> {
        match op {
            b'q' => {
                let key = self.u8()? as u32;
                self.memo_put(key)?;
            }
            b'r' => {
                let key = self.u32()?;
                self.memo_put(key)?;
            }
            0x94 => {
                let key = self.memo.len() as u32;
                self.memo_put(key)?;
            }
            b'h' => {
                let key = self.u8()? as u32;
                let value = self.memo_get(key)?;
                self.stack.push(value);
            }
            b'j' => {
                let key = self.u32()?;
                let value = self.memo_get(key)?;
                self.stack.push(value);
            }
            _ => unreachable!("dispatched by `step`"),
        }
        Ok(())
    }

    /// Strings, bytes, numbers, None and booleans.
    fn literal(&mut self, op: u8) -> Result<(), Problem> {
        match op {
            b'X' => {
                let len = self.u32()? as usize;
                let value = self.string(len)?;
                self.stack.push(value);
            }
            0x8c => {
                let len = self.u8()? as usize;
                let value = self.string(len)?;
                self.stack.push(value);
            }
            0x8d => {
                let len = usize::try_from(self.u64()?).map_err(|_| "pickle string too long".to_string())?;
                let value = self.string(len)?;
                self.stack.push(value);
            }
            b'C' => {
                let len = self.u8()? as usize;
                let bytes = self.take(len)?.to_vec();
                self.stack.push(Value::Bytes(bytes));
            }
            b'B' => {
                let len = self.u32()? as usize;
                let bytes = self.take(len)?.to_vec();
                self.stack.push(Value::Bytes(bytes));
            }
            b'J' => {
                let v = i32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes"));
                self.stack.push(Value::Int(v as i64));
            }
            b'K' => {
                let v = self.u8()?;
                self.stack.push(Value::Int(v as i64));
            }
            b'M' => {
                let v = self.u16()?;
                self.stack.push(Value::Int(v as i64));
            }
            0x8a => {
                let len = self.u8()? as usize;
                let bytes = self.take(len)?;
                self.stack.push(long_from_bytes(bytes));
            }
            b'G' => {
                let v = f64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes"));
                self.stack.push(Value::Float(v));
            }
            b'N' => self.stack.push(Value::None),
            0x88 => self.stack.push(Value::Bool(true)),
            0x89 => self.stack.push(Value::Bool(false)),
            _ => unreachable!("dispatched by `step`"),
        }
        Ok(())
    }

    /// Empty containers, tuples, and filling dicts and lists.
    fn container(&mut self, op: u8, at: usize) -> Result<(), Problem> {
        match op {
            b'}' => self.stack.push(Value::Dict(Vec::new())),
            b']' => self.stack.push(Value::List(Vec::new())),
            b')' => self.stack.push(Value::Tuple(Vec::new())),
            b't' => {
                let items = self.pop_mark()?;
                self.stack.push(Value::Tuple(items));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if self.stack.len() < n {
                    return Err(Problem(format!("malformed pickle: stack underflow at offset {at}")));
                }
                let items = self.stack.split_off(self.stack.len() - n);
                self.stack.push(Value::Tuple(items));
            }
            b's' => {
                let value = self.pop()?;
                let key = self.pop()?;
                match self.top_mut()? {
                    Value::Dict(items) => items.push((key, value)),
                    _ => {
                        return Err(Problem(format!(
                            "malformed pickle: SETITEM on a non-dict at offset {at}"
                        )))
                    }
                }
            }
            b'u' => {
                let items = self.pop_mark()?;
                if items.len() % 2 != 0 {
                    return Err(Problem(format!("malformed pickle: odd SETITEMS at offset {at}")));
                }
                let Value::Dict(dict) = self.top_mut()? else {
                    return Err(Problem(format!(
                        "malformed pickle: SETITEMS on a non-dict at offset {at}"
                    )));
                };
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    dict.push((k, v));
                }
            }
            b'a' => {
                let value = self.pop()?;
                match self.top_mut()? {
                    Value::List(items) => items.push(value),
                    _ => {
                        return Err(Problem(format!(
                            "malformed pickle: APPEND on a non-list at offset {at}"
                        )))
                    }
                }
            }
            b'e' => {
                let items = self.pop_mark()?;
                match self.top_mut()? {
                    Value::List(list) => list.extend(items),
                    _ => {
                        return Err(Problem(format!(
                            "malformed pickle: APPENDS on a non-list at offset {at}"
                        )))
                    }
                }
            }
            _ => unreachable!("dispatched by `step`"),
        }
        Ok(())
    }

    /// Globals (checked against the allow-list), calls, BUILD and persistent loads.
    fn object(&mut self, op: u8, at: usize) -> Result<(), Problem> {
        match op {
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                self.stack.push(Value::Global(resolve_global(&module, &name)?));
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                match (module, name) {
                    (Value::Str(m), Value::Str(n)) => self.stack.push(Value::Global(resolve_global(&m, &n)?)),
                    _ => {
                        return Err(Problem(format!(
                            "malformed pickle: STACK_GLOBAL without names at offset {at}"
                        )))
                    }
                }
            }
            b'R' | 0x81 => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let value = apply(callable, args).map_err(|e| format!("{e} (offset {at})"))?;
                self.stack.push(value);
            }
            b'b' => {
                let state = self.pop()?;
                match (self.top_mut()?, state) {
                    // OrderedDict attributes such as `_metadata`, and tensor state: data only, ignored.
                    (Value::Dict(_) | Value::Tensor(_), _) => {}
                    _ => {
                        return Err(Problem(format!(
                            "malformed pickle: BUILD on an unsupported object at offset {at}"
                        )))
                    }
                }
            }
            b'Q' => {
                let pid = self.pop()?;
                self.stack
                    .push(persistent_load(pid).map_err(|e| format!("{e} (offset {at})"))?);
            }
            _ => unreachable!("dispatched by `step`"),
        }
        Ok(())
    }
}

fn long_from_bytes(bytes: &[u8]) -> Value {
    if bytes.len() <= 8 {
        let mut buf = [0u8; 8];
        buf[..bytes.len()].copy_from_slice(bytes);
        if bytes.last().is_some_and(|&b| b & 0x80 != 0) {
            for b in buf.iter_mut().skip(bytes.len()) {
                *b = 0xff;
            }
        }
        Value::Int(i64::from_le_bytes(buf))
    } else {
        // Only torch's legacy magic number is this long; keep it as bytes for comparison.
        Value::Bytes(bytes.to_vec())
    }
}

fn as_usize(value: &Value, what: &str) -> Result<usize, Problem> {
    match value {
        Value::Int(v) if *v >= 0 => Ok(*v as usize),
        _ => Err(Problem(format!(
            "malformed tensor record: {what} is not a non-negative int"
        ))),
    }
}

fn as_usize_tuple(value: &Value, what: &str) -> Result<Vec<usize>, Problem> {
    match value {
        Value::Tuple(items) | Value::List(items) => items.iter().map(|v| as_usize(v, what)).collect(),
        _ => Err(Problem(format!("malformed tensor record: {what} is not a tuple"))),
    }
}

fn apply(callable: Value, args: Value) -> Result<Value, Problem> {
    let Value::Tuple(args) = args else {
        return Err(Problem::from("malformed pickle: REDUCE arguments are not a tuple"));
    };
    match callable {
        Value::Global(AllowedGlobal::OrderedDict) => Ok(Value::Dict(Vec::new())),
        Value::Global(AllowedGlobal::RebuildTensor) => {
            if args.len() < 4 {
                return Err(Problem::from("malformed _rebuild_tensor_v2 call: too few arguments"));
            }
            let Value::Storage(storage) = &args[0] else {
                return Err(Problem::from(
                    "malformed _rebuild_tensor_v2 call: first argument is not a storage",
                ));
            };
            let shape = as_usize_tuple(&args[2], "size")?;
            let stride = as_usize_tuple(&args[3], "stride")?;
            if shape.len() != stride.len() {
                return Err(Problem::from(
                    "malformed tensor record: size and stride differ in length",
                ));
            }
            Ok(Value::Tensor(TensorRef {
                storage: storage.clone(),
                offset: as_usize(&args[1], "storage offset")?,
                shape,
                stride,
            }))
        }
        Value::Global(AllowedGlobal::RebuildParameter) => match args.into_iter().next() {
            Some(tensor @ Value::Tensor(_)) => Ok(tensor),
            _ => Err(Problem::from(
                "malformed _rebuild_parameter call: first argument is not a tensor",
            )),
        },
        Value::Global(AllowedGlobal::StorageClass(_)) => {
            Err(Problem::from("refused pickle: direct construction of a storage object"))
        }
        _ => Err(Problem::from(
            "malformed pickle: REDUCE on a value that is not an allowed global",
        )),
    }
}

fn persistent_load(pid: Value) -> Result<Value, Problem> {
    let Value::Tuple(items) = pid else {
        return Err(Problem::from("malformed persistent id: not a tuple"));
    };
    match items.as_slice() {
        [Value::Str(kind), Value::Global(AllowedGlobal::StorageClass(dtype)), key, _location, numel, ..]
            if kind == "storage" =>
        {
            let key = match key {
                Value::Str(k) => k.clone(),
                Value::Int(k) => k.to_string(),
                _ => return Err(Problem::from("malformed persistent id: storage key is not a string")),
            };
            Ok(Value::Storage(StorageRef {
                dtype: *dtype,
                key,
                numel: as_usize(numel, "storage size")?,
            }))
        }
        _ => Err(Problem::from(
            "unsupported persistent id (expected a torch storage record)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_foreign_global() {
        // GLOBAL 'os system', then a str argument, TUPLE1, REDUCE, STOP (a classic pickle exploit).
        let mut data = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.".to_vec();
        let err = parse(&data).unwrap_err();
        assert!(err.0.contains("refused pickle global 'os.system'"), "{err}");
        data[4..7].copy_from_slice(b"nt\n");
        assert!(parse(&data).is_err());
    }

    #[test]
    fn truncated_input_is_an_error() {
        let data = b"\x80\x02X\xff\x00\x00\x00abc";
        let err = parse(data).unwrap_err();
        assert!(err.0.contains("truncated"), "{err}");
    }

    #[test]
    fn parses_containers_and_memo() {
        // {'a': [1, 2.5, True], 'b': <memo of the tuple (7,)>, 'c': <the same tuple again>}
        let data = b"\x80\x02}q\x00(X\x01\x00\x00\x00a](K\x01G@\x04\x00\x00\x00\x00\x00\x00\x88eX\x01\x00\x00\x00bK\x07\x85q\x01X\x01\x00\x00\x00ch\x01u.";
        let (value, used) = parse(data).unwrap();
        assert_eq!(used, data.len());
        let list = Value::List(vec![Value::Int(1), Value::Float(2.5), Value::Bool(true)]);
        let tuple = Value::Tuple(vec![Value::Int(7)]);
        assert_eq!(
            value,
            Value::Dict(vec![
                (Value::Str("a".into()), list),
                (Value::Str("b".into()), tuple.clone()),
                (Value::Str("c".into()), tuple)
            ])
        );
    }
}
