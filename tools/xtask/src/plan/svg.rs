//! The plan as a picture: CPUs and memory as partitions, tasks as boxes,
//! channels as arrows, findings in red (plain SVG, written by hand).

use std::fmt::Write;

use super::checks::{Finding, Level};
use super::model::{CONTINUOUS, Inputs, Origin};
use super::report::cpu_list;
use super::{Plan, mib};

const WIDTH: f64 = 1000.0;
const MARGIN: f64 = 20.0;
/// Colours of the VMs' partitions.
const PALETTE: &[&str] = &[
    "#4e79a7", "#59a14f", "#b07aa1", "#f28e2b", "#76b7b2", "#edc948",
];
const SERVICE: &str = "#9c9c9c";
const BAD: &str = "#d62728";
const WARN: &str = "#c77c00";
/// A box line starting with this is drawn in red (without the mark).
const BAD_MARK: &str = "\u{1}";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn text(o: &mut String, x: f64, y: f64, size: u32, attrs: &str, s: &str) {
    let _ = writeln!(
        o,
        r#"<text x="{x:.1}" y="{y:.1}" font-size="{size}" {attrs}>{}</text>"#,
        esc(s)
    );
}

struct Boxed {
    task: usize,
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

/// The SVG document.
/// `strict`: CPUs shared by VMs are an error (red), else a warning (orange).
pub fn draw(plan: &Plan, inputs: &Inputs, findings: &[Finding], strict: bool) -> String {
    let s = &plan.system;
    let ncpu = inputs.machine.cpus.max(1) as usize;
    let inner = WIDTH - 2.0 * MARGIN;
    let col = inner / ncpu as f64;
    let mut body = String::new();
    let errors = findings.iter().filter(|f| f.level == Level::Error).count();
    let warnings = findings.len() - errors;
    let verdict = if errors == 0 && warnings > 0 {
        format!("sound, {warnings} warnings")
    } else if errors == 0 {
        "sound".to_string()
    } else {
        format!("NOT SOUND: {errors} errors")
    };
    text(
        &mut body,
        MARGIN,
        30.0,
        20,
        r#"font-weight="bold""#,
        &format!("entry {}", inputs.entry),
    );
    text(
        &mut body,
        WIDTH - MARGIN,
        30.0,
        16,
        &format!(
            r#"text-anchor="end" font-weight="bold" fill="{}""#,
            if errors == 0 { "#2a7d2a" } else { BAD }
        ),
        &verdict,
    );

    // The VMs' colours.
    let colour = |task: usize| -> &str {
        plan.vms
            .iter()
            .position(|v| v.task == task)
            .map_or(SERVICE, |i| PALETTE[i % PALETTE.len()])
    };

    // CPUs: one column each, coloured by the VM whose scheduler has it.
    let mut y = 50.0;
    text(&mut body, MARGIN, y + 12.0, 13, r##"fill="#444""##, "CPUs");
    y += 18.0;
    for c in 0..ncpu {
        let owners: Vec<usize> = plan
            .vms
            .iter()
            .filter(|v| s.task(v.task).sched.cpus.contains(&(c as u32)))
            .map(|v| v.task)
            .collect();
        let (fill, label) = match owners.as_slice() {
            [] => ("#eeeeee".to_string(), format!("CPU {c}")),
            [one] => (
                colour(*one).to_string(),
                format!("CPU {c}: {}", s.task(*one).label()),
            ),
            many => (
                if strict { BAD } else { WARN }.to_string(),
                format!(
                    "CPU {c}: shared by {}",
                    many.iter()
                        .map(|t| s.task(*t).label())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        };
        let x = MARGIN + c as f64 * col;
        let _ = writeln!(
            body,
            r##"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="28" fill="{fill}" stroke="#fff" stroke-width="2"/>"##,
            x, col
        );
        text(
            &mut body,
            x + col / 2.0,
            y + 19.0,
            13,
            r#"text-anchor="middle" fill="white" font-weight="bold""#,
            &label,
        );
    }
    y += 50.0;

    // Services (every task that is not a VM), in a row.
    let mut boxes: Vec<Boxed> = Vec::new();
    let services: Vec<usize> = s
        .tasks
        .iter()
        .filter(|t| !plan.vms.iter().any(|v| v.task == t.id))
        .map(|t| t.id)
        .collect();
    if !services.is_empty() {
        let w = (inner / services.len() as f64 - 20.0).min(260.0);
        for (i, id) in services.iter().enumerate() {
            let t = s.task(*id);
            let x = MARGIN + i as f64 * (w + 20.0);
            let mut lines = vec![t.argv().join(" ")];
            lines.push(format!("scheduler: CPUs {}", cpu_list(&t.sched.cpus)));
            if let Some(io) = s.io.iter().find(|io| io.task == *id) {
                for b in &io.config.buses {
                    let devs: Vec<&str> = b.devices.iter().map(|v| v.name.as_str()).collect();
                    lines.push(format!("vbus {}: {}", b.name, devs.join(", ")));
                }
            }
            let h = 30.0 + 15.0 * lines.len() as f64;
            draw_box(
                &mut body,
                x,
                y,
                w,
                h,
                SERVICE,
                &format!("#{} {}", t.id, t.label()),
                &lines,
            );
            boxes.push(Boxed {
                task: *id,
                x,
                y,
                w,
                h,
            });
        }
        y += boxes.iter().map(|b| b.h).fold(0.0, f64::max) + 60.0;
    }

    // VMs, each under its CPUs; VMs whose CPUs collide go a row lower.
    let mut rows: Vec<Vec<(usize, usize)>> = Vec::new();
    let mut vm_boxes = Vec::new();
    for vm in &plan.vms {
        let t = s.task(vm.task);
        let (lo, hi) = match (t.sched.cpus.first(), t.sched.cpus.last()) {
            (Some(&a), Some(&b)) => (a as usize, b as usize),
            _ => (0, ncpu - 1),
        };
        let row = rows
            .iter()
            .position(|r| r.iter().all(|&(a, b)| hi < a || b < lo))
            .unwrap_or_else(|| {
                rows.push(Vec::new());
                rows.len() - 1
            });
        rows[row].push((lo, hi));
        let mut lines = Vec::new();
        lines.push(format!(
            "{} vCPUs on CPUs {}",
            vm.vcpus,
            cpu_list(&t.sched.cpus)
        ));
        for r in &vm.ram {
            let size = r.size.map_or("?".into(), |n| format!("{} MiB", mib(n)));
            if r.identity {
                lines.push(format!("RAM {size}, host-physical (-i)"));
            } else {
                for &(a, b) in &r.gpa {
                    let l = format!("RAM {size} at {a:#x}..{b:#x}");
                    if super::checks::ram_clashes(s, vm, (a, b)).is_empty() {
                        lines.push(l);
                    } else {
                        lines.push(format!("{BAD_MARK}{l}: over MMIO"));
                    }
                }
            }
        }
        for p in &vm.passed {
            let d =
                s.io.iter()
                    .find(|i| i.task == p.io_task)
                    .map(|i| i.device(p.hw));
            lines.push(format!(
                "passed through: {} ({})",
                p.name,
                d.and_then(|d| d.compatible.first())
                    .map_or("?", String::as_str)
            ));
        }
        if vm.passed.is_empty() {
            lines.push("passed through: nothing".into());
        }
        let emu: Vec<&str> = vm.emulated.iter().map(|e| e.kind).collect();
        lines.push(format!("emulated: {}", emu.join(", ")));
        if let Some(k) = &t.log.key {
            lines.push(format!("console: Ctrl-E {k}"));
        }
        vm_boxes.push((vm.task, lo, hi, row, lines));
    }
    let row_h = vm_boxes
        .iter()
        .map(|b| 30.0 + 15.0 * b.4.len() as f64)
        .fold(0.0, f64::max);
    for (task, lo, hi, row, lines) in &vm_boxes {
        let t = s.task(*task);
        let x = MARGIN + *lo as f64 * col + 6.0;
        let w = (*hi - *lo + 1) as f64 * col - 12.0;
        let by = y + *row as f64 * (row_h + 20.0);
        draw_box(
            &mut body,
            x,
            by,
            w,
            row_h,
            colour(*task),
            &format!("#{} {} (uvmm)", t.id, t.label()),
            lines,
        );
        boxes.push(Boxed {
            task: *task,
            x,
            y: by,
            w,
            h: row_h,
        });
    }
    if !vm_boxes.is_empty() {
        y += rows.len() as f64 * (row_h + 20.0) + 20.0;
    }

    // Channels: client to server, labelled with the capability name.
    let mut arrows = String::new();
    for t in &s.tasks {
        let Some(from) = boxes.iter().find(|b| b.task == t.id) else {
            continue;
        };
        let mut links: Vec<(usize, String, bool)> = Vec::new();
        for c in &t.caps {
            match &c.origin {
                Origin::Client {
                    server: Some(sv), ..
                }
                | Origin::Created {
                    server: Some(sv), ..
                } => links.push((*sv, c.name.clone(), false)),
                _ => {}
            }
        }
        if let Some(sv) = t.log.server {
            links.push((sv, "log".into(), true));
        }
        for (sv, name, faint) in links {
            let Some(to) = boxes.iter().find(|b| b.task == sv) else {
                continue;
            };
            let ((x1, y1), (x2, y2)) = if (to.y - from.y).abs() < 1.0 {
                // Side by side: from the facing edges, at mid height.
                let y = from.y + from.h.min(to.h) / 2.0;
                if to.x > from.x {
                    ((from.x + from.w, y), (to.x, y))
                } else {
                    ((from.x, y), (to.x + to.w, y))
                }
            } else if to.y + to.h < from.y {
                (
                    (from.x + from.w / 2.0, from.y),
                    (to.x + to.w / 2.0, to.y + to.h),
                )
            } else {
                (
                    (from.x + from.w / 2.0, from.y + from.h),
                    (to.x + to.w / 2.0, to.y),
                )
            };
            let style = if faint {
                r##"stroke="#bbbbbb" stroke-dasharray="4 3""##
            } else {
                r##"stroke="#333333" stroke-width="2""##
            };
            let _ = writeln!(
                arrows,
                r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" {style} marker-end="url(#arrow)"/>"#
            );
            if !faint {
                text(
                    &mut arrows,
                    (x1 + x2) / 2.0 + 4.0,
                    (y1 + y2) / 2.0,
                    12,
                    r##"fill="#333" font-weight="bold""##,
                    &name,
                );
            }
        }
    }

    // Memory: QEMU's RAM, boot modules, each Continuous dataspace, free.
    text(
        &mut body,
        MARGIN,
        y + 12.0,
        13,
        r##"fill="#444""##,
        &format!("memory: {} MiB (QEMU -m)", mib(inputs.machine.ram)),
    );
    y += 18.0;
    let total = inputs.machine.ram.max(1) as f64;
    let mut parts: Vec<(u64, String, String)> =
        vec![(inputs.modules_size, "modules".into(), "#cccccc".into())];
    for d in s.dataspaces.iter().filter(|d| d.flags & CONTINUOUS != 0) {
        let owner = d.holders.first().map(|(t, _)| *t);
        let label = owner.map_or("?".into(), |t| s.task(t).label());
        parts.push((
            d.size,
            format!("{label} {} MiB", mib(d.size)),
            owner.map_or(SERVICE, colour).to_string(),
        ));
    }
    let mut x = MARGIN;
    let used: u64 = parts.iter().map(|p| p.0).sum();
    for (size, label, fill) in &parts {
        let w = (*size as f64 / total * inner)
            .min(WIDTH - MARGIN - x)
            .max(0.0);
        let _ = writeln!(
            body,
            r##"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="28" fill="{fill}" stroke="#fff" stroke-width="2"/>"##
        );
        if w > 60.0 {
            text(
                &mut body,
                x + w / 2.0,
                y + 19.0,
                12,
                r#"text-anchor="middle" fill="white""#,
                label,
            );
        }
        x += w;
    }
    if used > inputs.machine.ram {
        text(
            &mut body,
            WIDTH - MARGIN,
            y + 46.0,
            13,
            &format!(r#"text-anchor="end" fill="{BAD}" font-weight="bold""#),
            &format!(
                "asked for {} MiB more than there is",
                mib(used - inputs.machine.ram)
            ),
        );
        y += 20.0;
    } else {
        text(
            &mut body,
            WIDTH - MARGIN - 4.0,
            y + 19.0,
            12,
            r##"text-anchor="end" fill="#666""##,
            &format!("free {} MiB", mib(inputs.machine.ram - used)),
        );
    }
    let _ = writeln!(
        body,
        r##"<rect x="{MARGIN}" y="{y:.1}" width="{inner:.1}" height="28" fill="none" stroke="#888"/>"##
    );
    y += 50.0;
    text(
        &mut body,
        MARGIN,
        y,
        11,
        r##"fill="#666""##,
        "solid arrow: a channel, client to server, named by the client's capability; dashed: a log on cons; CPUs and memory coloured by the VM they belong to",
    );
    y += 22.0;

    // Findings.
    for f in findings {
        let (fill, what) = match f.level {
            Level::Error => (BAD, "error"),
            Level::Warning => (WARN, "warning"),
        };
        for (i, chunk) in wrap(&format!("{what}: {}", f.message), 140)
            .iter()
            .enumerate()
        {
            text(
                &mut body,
                MARGIN + if i > 0 { 16.0 } else { 0.0 },
                y,
                12,
                &format!(r#"fill="{fill}""#),
                chunk,
            );
            y += 15.0;
        }
    }
    let height = y + MARGIN;
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0}" viewBox="0 0 {WIDTH} {height:.0}" font-family="DejaVu Sans, Helvetica, sans-serif">
<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#333"/></marker></defs>
<rect width="100%" height="100%" fill="white"/>
{body}{arrows}</svg>
"##
    )
}

#[allow(clippy::too_many_arguments)]
fn draw_box(
    o: &mut String,
    x: f64,
    y: f64,
    w: f64,
    h: f64,
    fill: &str,
    title: &str,
    lines: &[String],
) {
    let _ = writeln!(
        o,
        r##"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" rx="6" fill="white" stroke="{fill}" stroke-width="3"/>"##
    );
    let _ = writeln!(
        o,
        r##"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="22" rx="6" fill="{fill}"/>"##
    );
    text(
        o,
        x + 8.0,
        y + 16.0,
        13,
        r#"fill="white" font-weight="bold""#,
        title,
    );
    let chars = ((w - 12.0) / 6.6) as usize;
    for (i, l) in lines.iter().enumerate() {
        let (l, fill) = match l.strip_prefix(BAD_MARK) {
            Some(bad) => (bad, BAD),
            None => (l.as_str(), "#222"),
        };
        let mut l = l.to_string();
        if l.chars().count() > chars && chars > 3 {
            l = l.chars().take(chars - 1).collect::<String>() + "…";
        }
        text(
            o,
            x + 8.0,
            y + 38.0 + 15.0 * i as f64,
            12,
            &format!(r#"fill="{fill}""#),
            &l,
        );
    }
}

/// Splits `s` into lines of at most `n` characters at spaces.
fn wrap(s: &str, n: usize) -> Vec<String> {
    let mut out = vec![String::new()];
    for word in s.split(' ') {
        let last = out.last_mut().expect("never empty");
        if !last.is_empty() && last.chars().count() + word.chars().count() + 1 > n {
            out.push(word.to_string());
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(word);
        }
    }
    out
}
