//! `medgate inspect`: what a statistician looks at before running anything.

use std::path::PathBuf;

use crate::cli::{GlobalArgs, OutputFormat};
use crate::error::{Error, Result};
use crate::exit::Outcome;

fn pretty<T: serde::Serialize + ?Sized>(v: &T) -> Result<String> {
    serde_json::to_string_pretty(v).map_err(|e| Error::Internal(e.to_string()))
}

/// Summarise a golden set: cases, label balance, subgroup sizes, image formats and sizes.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  medgate inspect golden-sets/demo-cxr
  medgate inspect golden-sets/demo-cxr --min-subgroup 50 --format json

  medgate inspect golden-sets/site-x --decode
  medgate inspect golden-sets/site-x --render case-017 --out case-017.png --frames middle

Subgroup levels with fewer cases than --min-subgroup are flagged SMALL. --decode decodes every
image the way the model backends will (transfer syntax, layout, frame, Modality LUT, the VOI
actually applied, de-identification claims) and lists the ones that cannot be decoded, with
why. --render writes one case's model input (the decoded 8-bit image every backend receives
before its own resizing) as a PNG. Exit 0, or 2 when rows name missing, unreadable or
undecodable images.")]
pub struct InspectArgs {
    /// The golden-set directory.
    pub dir: PathBuf,
    /// Flag subgroup levels with fewer cases than this.
    #[arg(long, default_value_t = 30)]
    pub min_subgroup: u64,
    /// Image path column.
    #[arg(long, default_value = "image")]
    pub image_column: String,
    /// Case-ID column.
    #[arg(long, default_value = "case_id")]
    pub case_id_column: String,
    /// Decode every image (pre-flight) and report decodability and the VOI applied.
    #[arg(long)]
    pub decode: bool,
    /// Write this case's model input as a PNG (with --out).
    #[arg(long, value_name = "CASE_ID", requires = "out")]
    pub render: Option<String>,
    /// PNG path for --render.
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
    /// Multi-frame DICOM policy, as the protocol's `golden_set.frames`.
    #[arg(long, value_parser = ["refuse", "first", "middle"], default_value = "refuse")]
    pub frames: String,
    /// VOI choice, as the protocol's `golden_set.voi`.
    #[arg(long, value_parser = ["window", "lut", "minmax"], default_value = "window")]
    pub voi: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// The decode options named by `--frames` and `--voi`.
pub fn decode_options(frames: &str, voi: &str) -> crate::golden::image::DecodeOptions {
    use crate::golden::image::{DecodeOptions, FramePolicy, VoiPolicy};
    DecodeOptions {
        frames: match frames {
            "first" => FramePolicy::First,
            "middle" => FramePolicy::Middle,
            _ => FramePolicy::Refuse,
        },
        voi: match voi {
            "lut" => VoiPolicy::Lut,
            "minmax" => VoiPolicy::Minmax,
            _ => VoiPolicy::Window,
        },
    }
}

/// Runs `medgate inspect`.
pub fn run(args: InspectArgs, _global: &GlobalArgs) -> Result<Outcome> {
    let opts = decode_options(&args.frames, &args.voi);
    if let (Some(case), Some(out)) = (&args.render, &args.out) {
        let d = crate::golden::inspect::render_case(
            &args.dir,
            &args.image_column,
            &args.case_id_column,
            case,
            &opts,
            out,
        )?;
        match args.format {
            OutputFormat::Json => println!(
                "{}",
                pretty(&serde_json::json!({
                    "case_id": case,
                    "out": out.display().to_string(),
                    "width": d.image.width,
                    "height": d.image.height,
                    "channels": d.image.channels,
                    "dicom": d.info,
                }))?
            ),
            OutputFormat::Text => {
                println!(
                    "wrote {} ({}x{}x{}, 8-bit PNG: the model input before the backend's resizing)",
                    out.display(),
                    d.image.width,
                    d.image.height,
                    d.image.channels
                );
                if let Some(i) = &d.info {
                    println!(
                        "{}, {}, {}, frame {}, modality {}, VOI {}{}",
                        i.transfer_syntax_name,
                        i.photometric,
                        i.layout,
                        i.frame,
                        i.modality,
                        i.voi.describe(),
                        if i.inverted { ", inverted" } else { "" }
                    );
                }
            }
        }
        return Ok(Outcome::Pass);
    }
    if args.decode {
        let checks = crate::golden::inspect::preflight(
            &args.dir,
            None,
            &args.image_column,
            &args.case_id_column,
            &opts,
        )?;
        match args.format {
            OutputFormat::Json => println!("{}", pretty(&checks)?),
            OutputFormat::Text => print!("{}", crate::golden::inspect::render_preflight(&checks)),
        }
        return Ok(if checks.iter().all(|c| c.decodable) {
            Outcome::Pass
        } else {
            Outcome::Invalid
        });
    }
    let r = crate::golden::inspect::inspect(
        &args.dir,
        &args.image_column,
        &args.case_id_column,
        args.min_subgroup,
    )?;
    match args.format {
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&r).map_err(|e| Error::Internal(e.to_string()))?
        ),
        OutputFormat::Text => print!("{}", r.render_text()),
    }
    Ok(if r.problems.is_empty() {
        Outcome::Pass
    } else {
        Outcome::Invalid
    })
}
