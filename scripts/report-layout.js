// Measures a report's layout after the browser has laid it out, and writes
// what it found into the page as JSON in a hidden pre#layout-findings, where
// `chromium --dump-dom` lets scripts/check-report.sh read it.
//
// scripts/check-report.sh injects this file into a COPY of the report only:
// the report itself stays script-free.
//
// A problem is one of
//   overflow  a picture or chart (svg, img) reaches past its figure or
//             section, or past the page; or is wider than its scroll box, so
//             part of it is hidden
//   clipped   a text label (or a table's box) inside a picture lies partly
//             outside the picture's svg, or a text label outside its table's box
//   overlap   two titles, headings, captions or text labels cover each other
// and names both elements (tag#id.class and text) with the numbers in CSS px.
(function () {
  "use strict";
  const slack = 0.5; // sub-pixel rounding is not a problem
  const problems = [];
  const counts = { pictures: 0, texts: 0, pairs: 0 };

  // tag#id.class, where it is, and (unless it is a box around others) its text.
  function name(element, withText = true) {
    let label = element.tagName.toLowerCase();
    if (element.id) label += "#" + element.id;
    const classes = element.getAttribute("class");
    if (classes) label += "." + classes.trim().split(/\s+/).join(".");
    const owner = element.parentElement && element.parentElement.closest("[id]");
    if (owner && !element.id) label += " in " + owner.tagName.toLowerCase() + "#" + owner.id;
    const text = (element.textContent || "").replace(/\s+/g, " ").trim();
    if (withText && text) {
      label += ' "' + (text.length > 60 ? text.slice(0, 59) + "…" : text) + '"';
    }
    return label;
  }

  function round(value) { return Math.round(value * 10) / 10; }
  function box(rect) {
    return { left: round(rect.left), top: round(rect.top), right: round(rect.right), bottom: round(rect.bottom) };
  }
  function visible(rect) { return rect.width > 0 && rect.height > 0; }

  // How far `inner` reaches past `outer` on each side (positive: past it).
  function excess(inner, outer) {
    return {
      left: outer.left - inner.left, right: inner.right - outer.right,
      top: outer.top - inner.top, bottom: inner.bottom - outer.bottom,
    };
  }
  function past(inner, outer, sides) {
    const by = excess(inner, outer);
    return sides.filter((side) => by[side] > slack).map((side) => side + " by " + round(by[side]) + " px");
  }

  const pageWidth = document.documentElement.clientWidth;
  const pageRect = { left: 0, right: pageWidth, top: -Infinity, bottom: Infinity };
  if (document.documentElement.scrollWidth > pageWidth + slack) {
    problems.push({
      kind: "overflow", element: "the page",
      detail: "the page scrolls sideways: " + document.documentElement.scrollWidth + " px of content in a " + pageWidth + " px window",
    });
  }

  // Pictures and charts against their boxes and the page.
  for (const picture of document.querySelectorAll("svg, img")) {
    if (picture.parentElement && picture.parentElement.closest("svg")) continue; // an svg inside a picture is part of it
    const rect = picture.getBoundingClientRect();
    if (!visible(rect)) continue;
    counts.pictures += 1;
    const container = picture.closest("figure") || picture.closest("section") || document.body;
    const sides = past(rect, container.getBoundingClientRect(), ["left", "right"]);
    if (sides.length) {
      problems.push({
        kind: "overflow", element: name(picture, false), box: name(container, false), at: box(rect), boxAt: box(container.getBoundingClientRect()),
        detail: "reaches past " + container.tagName.toLowerCase() + (container.id ? "#" + container.id : "") + " on the " + sides.join(", "),
      });
    }
    const pageSides = past(rect, pageRect, ["left", "right"]);
    if (pageSides.length) {
      problems.push({ kind: "overflow", element: name(picture, false), at: box(rect), detail: "reaches past the page (" + pageWidth + " px) on the " + pageSides.join(", ") });
    }
    for (let scroller = picture.parentElement; scroller && scroller !== container.parentElement; scroller = scroller.parentElement) {
      const style = getComputedStyle(scroller);
      if (style.overflowX === "visible") continue;
      const hidden = scroller.scrollWidth - scroller.clientWidth;
      if (hidden > slack) {
        problems.push({
          kind: "overflow", element: name(picture, false), box: name(scroller, false),
          detail: round(rect.width) + " px wide in a " + scroller.clientWidth + " px scroll box: " + round(hidden) + " px hidden",
        });
      }
      break;
    }
  }

  // Inside each picture: labels and tables within the drawing, labels within their table.
  const drawings = [...document.querySelectorAll("svg")].filter((svg) => !(svg.parentElement && svg.parentElement.closest("svg")));
  for (const svg of drawings) {
    const svgRect = svg.getBoundingClientRect();
    if (!visible(svgRect)) continue;
    const texts = [...svg.querySelectorAll("text")].filter((text) => visible(text.getBoundingClientRect()));
    counts.texts += texts.length;
    for (const element of [...texts, ...svg.querySelectorAll("g.table-node, g.root-marker")]) {
      const rect = element.getBoundingClientRect();
      const sides = past(rect, svgRect, ["left", "right", "top", "bottom"]);
      if (sides.length) {
        problems.push({ kind: "clipped", element: name(element), box: name(svg, false), at: box(rect), boxAt: box(svgRect), detail: "outside the picture on the " + sides.join(", ") });
      }
    }
    for (const table of svg.querySelectorAll("g.table-node, g.root-marker")) {
      const outline = table.querySelector("rect");
      if (!outline) continue;
      const outlineRect = outline.getBoundingClientRect();
      for (const text of table.querySelectorAll("text")) {
        const rect = text.getBoundingClientRect();
        const sides = past(rect, outlineRect, ["left", "right"]);
        if (sides.length) {
          problems.push({ kind: "clipped", element: name(text), box: name(table, false), at: box(rect), boxAt: box(outlineRect), detail: "runs out of its table's box on the " + sides.join(", ") });
        }
      }
    }
    overlaps(texts);
  }

  // The page's own titles, headings and captions.
  overlaps([...document.querySelectorAll("h1, h2, h3, figcaption, caption, th, dt, .chart-legend, ul.legend li")]);

  function overlaps(elements) {
    const rects = elements.map((element) => element.getBoundingClientRect());
    for (let i = 0; i < elements.length; i += 1) {
      for (let j = i + 1; j < elements.length; j += 1) {
        counts.pairs += 1;
        const a = rects[i], b = rects[j];
        const width = Math.min(a.right, b.right) - Math.max(a.left, b.left);
        const height = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
        if (width > slack && height > slack) {
          problems.push({
            kind: "overlap", element: name(elements[i]), other: name(elements[j]), at: box(a), otherAt: box(b),
            detail: "overlap by " + round(width) + " x " + round(height) + " px",
          });
        }
      }
    }
  }

  const findings = document.createElement("pre");
  findings.id = "layout-findings";
  findings.hidden = true;
  findings.textContent = JSON.stringify({ pageWidth: pageWidth, counts: counts, problems: problems });
  document.body.appendChild(findings);
})();
