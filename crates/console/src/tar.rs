//! A minimal ustar writer: the case export (a folder of files) as one download.

use std::io::{self, Read};
use std::path::Path;

/// The files under `folder` (recursively, sorted), as a tar archive under `prefix/`.
/// Only regular files; at most `max_bytes` in all (an error beyond).
pub fn folder(folder: &Path, prefix: &str, max_bytes: u64) -> io::Result<Vec<u8>> {
    let mut files = Vec::new();
    collect(folder, folder, &mut files)?;
    files.sort();
    let mut out = Vec::new();
    let mut total = 0u64;
    for relative in files {
        let mut data = Vec::new();
        std::fs::File::open(folder.join(&relative))?
            .take(max_bytes.saturating_sub(total) + 1)
            .read_to_end(&mut data)?;
        total += data.len() as u64;
        if total > max_bytes {
            return Err(io::Error::other("export larger than the download limit"));
        }
        append(&mut out, &format!("{prefix}/{relative}"), &data)?;
    }
    out.extend_from_slice(&[0u8; 1024]);
    Ok(out)
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<String>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            collect(root, &entry.path(), out)?;
        } else if kind.is_file() {
            let path = entry.path();
            let relative = path.strip_prefix(root).map_err(io::Error::other)?;
            out.push(relative.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

/// One file: a 512-byte ustar header, the data, zero padding to 512.
pub fn append(out: &mut Vec<u8>, name: &str, data: &[u8]) -> io::Result<()> {
    if name.len() > 100 {
        return Err(io::Error::other(format!("name too long for tar: {name}")));
    }
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    header[100..108].copy_from_slice(b"0000644\0");
    header[108..116].copy_from_slice(b"0000000\0");
    header[116..124].copy_from_slice(b"0000000\0");
    header[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
    header[136..148].copy_from_slice(b"00000000000\0");
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_tar_reads_what_we_write() {
        let dir = std::env::temp_dir().join(format!("sg-tar-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("reports")).unwrap();
        std::fs::write(dir.join("case.json"), b"{\"id\":1}").unwrap();
        std::fs::write(dir.join("reports/1.eml"), vec![b'x'; 1000]).unwrap();
        let archive = folder(&dir, "case-1", 1 << 20).unwrap();
        assert!(folder(&dir, "case-1", 100).is_err(), "the limit holds");
        let file = dir.with_extension("tar");
        std::fs::write(&file, &archive).unwrap();
        let listing = std::process::Command::new("tar")
            .arg("-tvf")
            .arg(&file)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&listing.stdout);
        assert!(
            listing.status.success(),
            "{}",
            String::from_utf8_lossy(&listing.stderr)
        );
        assert!(
            text.contains("case-1/case.json") && text.contains("case-1/reports/1.eml"),
            "{text}"
        );
        assert!(text.contains(" 1000 "), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_file(&file).unwrap();
    }
}
