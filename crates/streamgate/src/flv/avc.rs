//! H.264 pieces FLV needs: length-prefixed (AVCC) NAL units, the
//! `AVCDecoderConfigurationRecord` built from SPS and PPS (ISO/IEC 14496-15 §5.3.3.1, the
//! payload of FLV's AVC sequence header), and the few SPS fields the muxer uses (picture size,
//! frame rate, reordering depth), parsed with `h264-reader`.

use bytes::{BufMut, Bytes, BytesMut};
use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::nal::{Nal, RefNal};

use crate::error::AvcError;

/// NAL unit type of a sequence parameter set (H.264 Table 7-1).
pub const NAL_SPS: u8 = 7;
/// NAL unit type of a picture parameter set.
pub const NAL_PPS: u8 = 8;
/// NAL unit type of an access unit delimiter.
pub const NAL_AUD: u8 = 9;
/// NAL unit type of an IDR slice.
pub const NAL_IDR: u8 = 5;

/// The `nal_unit_type` (low 5 bits of the first byte); 0 for an empty unit.
pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

/// Splits 4-byte big-endian length-prefixed NAL units (the MP4/FLV "AVCC" framing).
///
/// # Errors
/// [`AvcError::Truncated`] when a length runs past the end of `data`.
pub fn split_avcc(data: &[u8]) -> Result<Vec<&[u8]>, AvcError> {
    let mut units = Vec::new();
    let mut offset = 0;
    while offset < data.len() {
        let Some(len_bytes) = data.get(offset..offset + 4) else {
            return Err(AvcError::Truncated { offset });
        };
        let len = u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
        let start = offset + 4;
        let end = start
            .checked_add(len as usize)
            .filter(|end| *end <= data.len())
            .ok_or(AvcError::Truncated { offset })?;
        units.push(&data[start..end]);
        offset = end;
    }
    Ok(units)
}

/// Writes NAL units with 4-byte big-endian length prefixes.
pub fn join_avcc<'a>(units: impl IntoIterator<Item = &'a [u8]>) -> BytesMut {
    let mut out = BytesMut::new();
    for unit in units {
        // A single NAL unit of 4 GiB cannot come out of an RTP depacketizer.
        out.put_u32(u32::try_from(unit.len()).unwrap_or(u32::MAX));
        out.put_slice(unit);
    }
    out
}

/// Fields of an SPS the muxer needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpsInfo {
    /// `profile_idc` (66 baseline, 77 main, 100 high, ...).
    pub profile_idc: u8,
    /// Cropped picture width in pixels.
    pub width: u32,
    /// Cropped picture height in pixels.
    pub height: u32,
    /// Frames per second from the VUI timing information, when present.
    pub fps: Option<f64>,
    /// How many frames may precede a frame in decoding order and follow it in output order:
    /// the VUI's `max_num_reorder_frames` when present, else 0 for baseline-class profiles
    /// (which have no B slices) and 2 otherwise (x264's default B-pyramid).
    pub reorder_frames: u32,
    /// `chroma_format_idc` (1 = 4:2:0).
    pub chroma_format_idc: u8,
    /// `bit_depth_luma_minus8`.
    pub bit_depth_luma_minus8: u8,
    /// `bit_depth_chroma_minus8`.
    pub bit_depth_chroma_minus8: u8,
}

/// Default reordering depth assumed when the SPS does not state it and the profile allows B
/// slices.
pub const DEFAULT_REORDER_FRAMES: u32 = 2;

impl SpsInfo {
    /// Parses an SPS NAL unit (with its one-byte NAL header, without a length prefix or start
    /// code).
    ///
    /// # Errors
    /// [`AvcError::WrongNalType`] for a non-SPS unit, [`AvcError::BadSps`] when it does not
    /// parse.
    pub fn parse(sps: &[u8]) -> Result<Self, AvcError> {
        if nal_type(sps) != NAL_SPS {
            return Err(AvcError::WrongNalType {
                expected: NAL_SPS,
                found: nal_type(sps),
            });
        }
        let nal = RefNal::new(sps, &[], true);
        let parsed = SeqParameterSet::from_bits(nal.rbsp_bits()).map_err(|e| AvcError::BadSps {
            reason: format!("{e:?}"),
        })?;
        let (width, height) = parsed.pixel_dimensions().map_err(|e| AvcError::BadSps {
            reason: format!("{e:?}"),
        })?;
        let profile_idc = parsed.profile_idc.into();
        let stated = parsed
            .vui_parameters
            .as_ref()
            .and_then(|vui| vui.bitstream_restrictions.as_ref())
            .map(|r| r.max_num_reorder_frames);
        // Baseline (66) and constrained baseline have no B slices.
        let reorder_frames = stated.unwrap_or(if profile_idc == 66 {
            0
        } else {
            DEFAULT_REORDER_FRAMES
        });
        let chroma = &parsed.chroma_info;
        Ok(Self {
            profile_idc,
            width,
            height,
            fps: parsed.fps().filter(|f| f.is_finite() && *f > 0.0),
            reorder_frames,
            chroma_format_idc: chroma_format_idc(chroma.chroma_format),
            bit_depth_luma_minus8: chroma.bit_depth_luma_minus8,
            bit_depth_chroma_minus8: chroma.bit_depth_chroma_minus8,
        })
    }
}

fn chroma_format_idc(format: h264_reader::nal::sps::ChromaFormat) -> u8 {
    use h264_reader::nal::sps::ChromaFormat;
    match format {
        ChromaFormat::Monochrome => 0,
        ChromaFormat::YUV420 => 1,
        ChromaFormat::YUV422 => 2,
        ChromaFormat::YUV444 => 3,
        ChromaFormat::Invalid(v) => u8::try_from(v).unwrap_or(1),
    }
}

/// Profiles whose record carries the chroma and bit-depth extension (ISO/IEC 14496-15
/// §5.3.3.1.2: `profile_idc` 100, 110, 122 or 144).
fn has_high_profile_extension(profile_idc: u8) -> bool {
    matches!(profile_idc, 100 | 110 | 122 | 144)
}

/// Builds an `AVCDecoderConfigurationRecord` (ISO/IEC 14496-15 §5.3.3.1) from one SPS and
/// one or more PPS NAL units (each with its NAL header, without prefixes), with 4-byte NAL
/// length fields (`lengthSizeMinusOne = 3`).
///
/// Layout: version 1, profile, profile compatibility and level copied from SPS bytes 1-3,
/// `0xFF`, `0xE1` (one SPS), SPS length and bytes, PPS count, each PPS length and bytes; for
/// the high profiles the chroma format, bit depths and zero SPS extensions follow, taken from
/// `info` (the parsed SPS).
///
/// # Errors
/// [`AvcError::ShortSps`], [`AvcError::WrongNalType`] or [`AvcError::TooLong`].
pub fn decoder_configuration_record(
    sps: &[u8],
    pps: &[&[u8]],
    info: Option<&SpsInfo>,
) -> Result<Bytes, AvcError> {
    if sps.len() < 4 {
        return Err(AvcError::ShortSps { len: sps.len() });
    }
    if nal_type(sps) != NAL_SPS {
        return Err(AvcError::WrongNalType {
            expected: NAL_SPS,
            found: nal_type(sps),
        });
    }
    let mut out = BytesMut::with_capacity(
        11 + sps.len() + pps.iter().map(|p| 2 + p.len()).sum::<usize>() + 4,
    );
    out.put_u8(1);
    out.put_slice(&sps[1..4]);
    out.put_u8(0xfc | 3);
    out.put_u8(0xe0 | 1);
    out.put_u16(u16::try_from(sps.len()).map_err(|_| AvcError::TooLong { len: sps.len() })?);
    out.put_slice(sps);
    out.put_u8(u8::try_from(pps.len()).map_err(|_| AvcError::TooLong { len: pps.len() })?);
    for unit in pps {
        if nal_type(unit) != NAL_PPS {
            return Err(AvcError::WrongNalType {
                expected: NAL_PPS,
                found: nal_type(unit),
            });
        }
        out.put_u16(u16::try_from(unit.len()).map_err(|_| AvcError::TooLong { len: unit.len() })?);
        out.put_slice(unit);
    }
    if has_high_profile_extension(sps[1]) {
        let (chroma, luma, chroma_depth) = info.map_or((1, 0, 0), |i| {
            (
                i.chroma_format_idc,
                i.bit_depth_luma_minus8,
                i.bit_depth_chroma_minus8,
            )
        });
        out.put_u8(0xfc | (chroma & 0x03));
        out.put_u8(0xf8 | (luma & 0x07));
        out.put_u8(0xf8 | (chroma_depth & 0x07));
        out.put_u8(0);
    }
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPS and PPS written by x264 for a 640x360 High-profile stream at 24 fps with 2
    /// B-frames (`gst-launch-1.0 videotestsrc num-buffers=30 !
    /// video/x-raw,width=640,height=360,framerate=24/1 ! x264enc speed-preset=veryfast
    /// bframes=2 b-adapt=false key-int-max=24 ! video/x-h264,profile=high,
    /// stream-format=byte-stream`, units cut at the start codes).
    pub(crate) const SPS_HIGH_640X360: &[u8] = &[
        0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x16, 0xa0, 0xc0, 0xc0,
        0xd4, 0xa0, 0x00, 0x00, 0x03, 0x00, 0x20, 0x00, 0x00, 0x06, 0x11, 0xe2, 0xc5, 0xb2, 0xc0,
    ];
    pub(crate) const PPS: &[u8] = &[0x68, 0xef, 0xbc, 0xb0];

    #[test]
    fn avcc_split_and_join_round_trip() {
        let joined = join_avcc([SPS_HIGH_640X360, PPS, &[0x65, 0x88, 0x84][..]]);
        let units = split_avcc(&joined).unwrap();
        assert_eq!(units.len(), 3);
        assert_eq!(nal_type(units[0]), NAL_SPS);
        assert_eq!(nal_type(units[1]), NAL_PPS);
        assert_eq!(nal_type(units[2]), NAL_IDR);
        assert_eq!(units[2], &[0x65, 0x88, 0x84]);
    }

    #[test]
    fn truncated_avcc_is_an_error() {
        for (data, offset) in [
            (&[0, 0, 0, 5, 1, 2][..], 0),
            (&[0, 0, 0, 1, 9, 0, 0][..], 5),
            (&[0, 0, 0][..], 0),
        ] {
            assert_eq!(
                split_avcc(data),
                Err(AvcError::Truncated { offset }),
                "{data:?}"
            );
        }
        assert_eq!(split_avcc(&[]).unwrap().len(), 0);
    }

    #[test]
    fn sps_fields() {
        let info = SpsInfo::parse(SPS_HIGH_640X360).unwrap();
        assert_eq!(info.profile_idc, 100);
        assert_eq!((info.width, info.height), (640, 360));
        assert_eq!(info.chroma_format_idc, 1);
        assert_eq!(info.bit_depth_luma_minus8, 0);
        let fps = info.fps.unwrap();
        assert!((fps - 24.0).abs() < 0.01, "{fps}");
        assert!(info.reorder_frames >= 1, "{info:?}");
        assert!(matches!(
            SpsInfo::parse(PPS),
            Err(AvcError::WrongNalType {
                expected: 7,
                found: 8
            })
        ));
    }

    #[test]
    fn record_layout_for_high_profile() {
        let info = SpsInfo::parse(SPS_HIGH_640X360).unwrap();
        let record = decoder_configuration_record(SPS_HIGH_640X360, &[PPS], Some(&info)).unwrap();
        let n = SPS_HIGH_640X360.len();
        assert_eq!(record[0], 1, "configurationVersion");
        assert_eq!(
            &record[1..4],
            &SPS_HIGH_640X360[1..4],
            "profile, compat, level"
        );
        assert_eq!(record[4], 0xff, "reserved + lengthSizeMinusOne = 3");
        assert_eq!(record[5], 0xe1, "reserved + one SPS");
        assert_eq!(u16::from_be_bytes([record[6], record[7]]) as usize, n);
        assert_eq!(&record[8..8 + n], SPS_HIGH_640X360);
        assert_eq!(record[8 + n], 1, "one PPS");
        assert_eq!(
            u16::from_be_bytes([record[9 + n], record[10 + n]]) as usize,
            PPS.len()
        );
        let pps_end = 11 + n + PPS.len();
        assert_eq!(&record[11 + n..pps_end], PPS);
        // High profile extension: 4:2:0, 8-bit, no SPS extensions.
        assert_eq!(&record[pps_end..], &[0xfd, 0xf8, 0xf8, 0x00]);
    }

    #[test]
    fn record_for_baseline_has_no_extension_and_rejects_bad_units() {
        let sps = [0x67, 0x42, 0xc0, 0x1e, 0x95];
        let record = decoder_configuration_record(&sps, &[PPS, PPS], None).unwrap();
        assert_eq!(record.len(), 6 + 2 + sps.len() + 1 + 2 * (2 + PPS.len()));
        assert_eq!(record[8 + sps.len()], 2, "two PPS");
        assert_eq!(
            decoder_configuration_record(&sps[..3], &[PPS], None),
            Err(AvcError::ShortSps { len: 3 })
        );
        assert_eq!(
            decoder_configuration_record(PPS, &[PPS], None),
            Err(AvcError::WrongNalType {
                expected: 7,
                found: 8
            })
        );
        assert_eq!(
            decoder_configuration_record(&sps, &[&sps], None),
            Err(AvcError::WrongNalType {
                expected: 8,
                found: 7
            })
        );
    }
}
