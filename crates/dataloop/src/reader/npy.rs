//! NumPy `.npy` arrays (comma2k19 stores every signal as one) read with the `npyz` crate into
//! row-major `f64` matrices; Fortran-order arrays are transposed, other dtypes are rejected with
//! a typed error.

use std::path::Path;

use npyz::{NpyFile, Order};

use crate::error::ReadError;

/// A 1-D or 2-D array of `f64` in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    /// Number of rows (the first dimension).
    pub rows: usize,
    /// Number of columns (1 for a 1-D array).
    pub cols: usize,
    /// `rows × cols` values, row-major.
    pub data: Vec<f64>,
}

impl Matrix {
    /// Row `i` as a slice of `cols` values.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }
}

/// Reads a `<f8` array of 1 or 2 dimensions.
///
/// # Errors
/// [`ReadError::Io`] when unreadable; [`ReadError::Npy`] for a bad header, a dtype other than
/// little-endian `f64`, more than 2 dimensions or a body shorter than the header says.
pub fn read_f64(path: &Path) -> Result<Matrix, ReadError> {
    let bytes = fs_err::read(path).map_err(|source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |reason: String| ReadError::Npy {
        path: path.to_path_buf(),
        reason,
    };
    let file = NpyFile::new(&bytes[..]).map_err(|e| bad(format!("header: {e}")))?;
    let shape = file.shape().to_vec();
    let order = file.order();
    let dtype = file.dtype();
    let (rows, cols) = match shape.as_slice() {
        [n] => (usize_of(*n, path)?, 1),
        [n, m] => (usize_of(*n, path)?, usize_of(*m, path)?),
        other => return Err(bad(format!("{} dimensions, expected 1 or 2", other.len()))),
    };
    let data: Vec<f64> = file.into_vec::<f64>().map_err(|e| {
        bad(format!(
            "dtype {dtype:?} is not little-endian f64 or body is short: {e}"
        ))
    })?;
    if data.len() != rows * cols {
        return Err(bad(format!(
            "body holds {} values, header says {rows}×{cols}",
            data.len()
        )));
    }
    let data = if order == Order::Fortran && cols > 1 {
        let mut out = vec![0.0; data.len()];
        for c in 0..cols {
            for r in 0..rows {
                out[r * cols + c] = data[c * rows + r];
            }
        }
        out
    } else {
        data
    };
    Ok(Matrix { rows, cols, data })
}

fn usize_of(n: u64, path: &Path) -> Result<usize, ReadError> {
    usize::try_from(n).map_err(|_| ReadError::Npy {
        path: path.to_path_buf(),
        reason: format!("dimension {n} too large"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy_bytes(descr: &str, fortran: bool, shape: &str, body: &[u8]) -> Vec<u8> {
        let mut header = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
            if fortran { "True" } else { "False" }
        );
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&u16::try_from(header.len()).unwrap().to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(body);
        out
    }

    fn f64s(values: &[f64]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn reads_orders_and_rejects_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        type Case = (&'static str, Vec<u8>, Result<Vec<f64>, &'static str>);
        let cases: Vec<Case> = vec![
            (
                "c",
                npy_bytes("<f8", false, "(2, 3)", &f64s(&[1., 2., 3., 4., 5., 6.])),
                Ok(vec![1., 2., 3., 4., 5., 6.]),
            ),
            // Fortran order: columns stored first.
            (
                "f",
                npy_bytes("<f8", true, "(2, 3)", &f64s(&[1., 4., 2., 5., 3., 6.])),
                Ok(vec![1., 2., 3., 4., 5., 6.]),
            ),
            (
                "1d",
                npy_bytes("<f8", false, "(3,)", &f64s(&[7., 8., 9.])),
                Ok(vec![7., 8., 9.]),
            ),
            (
                "short",
                npy_bytes("<f8", false, "(4,)", &f64s(&[1., 2.])),
                Err("not a readable NumPy"),
            ),
            (
                "dtype",
                npy_bytes("|S8", false, "(1,)", b"abcdefgh"),
                Err("not a readable NumPy"),
            ),
            (
                "garbage",
                b"not numpy at all".to_vec(),
                Err("not a readable NumPy"),
            ),
        ];
        for (name, bytes, want) in cases {
            let path = dir.path().join(name);
            fs_err::write(&path, bytes).unwrap();
            match (read_f64(&path), want) {
                (Ok(m), Ok(values)) => assert_eq!(m.data, values, "{name}"),
                (Err(e), Err(text)) => assert!(e.to_string().contains(text), "{name}: {e}"),
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }
}
