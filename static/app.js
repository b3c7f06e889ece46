// Progressive enhancement of the home page: with this script, photos are chosen by
// click, drag-and-drop, paste, camera or example, previewed, and classified through
// the JSON API without a page reload. Without it, the same forms post and the server
// renders the result page.
"use strict";

(() => {
  const endpoint = document.getElementById("upload-form").action;
  const dropZone = document.getElementById("drop-zone");
  const fileInput = document.getElementById("file");
  const cameraInput = document.getElementById("camera");
  const urlForm = document.getElementById("url-form");
  const output = document.getElementById("output");
  const status = document.getElementById("status");
  const errorBox = document.getElementById("error");
  const resultBox = document.getElementById("result");
  const figure = document.getElementById("preview-figure");
  const preview = document.getElementById("preview");
  let previewUrl = null;

  const percent = (p) => `${(p * 100).toFixed(1)}%`;

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    Object.entries(attrs).forEach(([key, value]) => node.setAttribute(key, value));
    children.forEach((child) => node.append(child));
    return node;
  }

  function showPreview(src) {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = src && src.startsWith("blob:") ? src : null;
    figure.hidden = !src;
    if (src) preview.src = src;
  }

  function busy(on) {
    output.hidden = false;
    output.setAttribute("aria-busy", on ? "true" : "false");
    status.hidden = !on;
    if (on) {
      errorBox.hidden = true;
      resultBox.hidden = true;
    }
  }

  function showError(error, httpStatus) {
    busy(false);
    const help = {
      payload_too_large: "Try a smaller photo.",
      image_too_large: "Try a smaller photo.",
      unsupported_media_type: "Choose a JPEG, PNG, WebP, GIF, BMP, TIFF or HEIC photo.",
      url_not_allowed: "That address is not on the public internet.",
      overloaded: "The server is busy. Try again in a moment.",
      queue_timeout: "The server is busy. Try again in a moment.",
      request_timeout: "The upload was too slow. Check the connection and try again.",
      url_timeout: "That address was too slow to answer. Try another, or upload the photo.",
    }[error.code];
    errorBox.replaceChildren(
      el("h2", {}, "That didn't work"),
      el("p", {}, error.message + (help ? ` ${help}` : "")),
      el("p", { class: "muted" }, "Error ", el("code", {}, error.code), ` (HTTP ${httpStatus})`),
    );
    errorBox.hidden = false;
  }

  // Drawn as templates/index.html draws it without JavaScript: a single-label answer as
  // its top class and bars; a multi-label one as the labels past the threshold, then
  // every label as a bar with the threshold marked.
  function showResult(result) {
    busy(false);
    const multi = result.kind === "multi-label";
    const bars = el("ol", { class: multi ? "bars multi-label" : "bars" });
    if (multi) bars.style.setProperty("--threshold", percent(result.threshold));
    result.predictions.forEach((p) => {
      const fill = el("span");
      fill.style.width = percent(p.probability);
      bars.append(
        el(
          "li",
          multi && result.labels.includes(p.label) ? { class: "pass" } : {},
          el("span", { class: "bar-label" }, p.label),
          el("span", { class: "bar", "aria-hidden": "true" }, fill),
          el("span", { class: "bar-value" }, percent(p.probability)),
        ),
      );
    });
    let heading, detail;
    if (!multi) {
      heading = el("h2", {}, "It looks like ", el("strong", { class: "top-label" }, result.label));
      detail = `${percent(result.probability)} sure`;
    } else if (result.labels.length) {
      const chips = result.labels.map((label) => el("strong", { class: "top-label" }, label));
      heading = el("h2", {}, "It shows ", el("span", { class: "passing" }, ...chips));
    } else {
      heading = el("h2", {}, "No label passes the threshold");
    }
    if (multi) detail = `Labels above ${percent(result.threshold)} (the dashed line) pass`;
    resultBox.replaceChildren(heading, el("p", { class: "muted" }, `${detail} · ${result.elapsed_ms} ms`), bars);
    resultBox.hidden = false;
  }

  async function classify(request, previewSrc) {
    showPreview(previewSrc);
    busy(true);
    try {
      const response = await fetch(endpoint, { method: "POST", headers: { Accept: "application/json" }, ...request });
      const body = await response.json();
      if (response.ok) showResult(body);
      else showError(body.error, response.status);
    } catch (error) {
      showError({ code: "network_error", message: "The server could not be reached." }, 0);
    }
  }

  function classifyFile(file) {
    if (!file) return;
    const body = new FormData();
    body.append("file", file, file.name || "pasted-image");
    classify({ body }, URL.createObjectURL(file));
  }

  function classifyUrl(url) {
    classify({ body: JSON.stringify({ url }), headers: { Accept: "application/json", "Content-Type": "application/json" } }, url);
  }

  fileInput.addEventListener("change", () => classifyFile(fileInput.files[0]));
  cameraInput.addEventListener("change", () => classifyFile(cameraInput.files[0]));

  dropZone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      fileInput.click();
    }
  });
  ["dragenter", "dragover"].forEach((type) =>
    dropZone.addEventListener(type, (event) => {
      event.preventDefault();
      dropZone.classList.add("dragging");
    }),
  );
  ["dragleave", "drop"].forEach((type) =>
    dropZone.addEventListener(type, () => dropZone.classList.remove("dragging")),
  );
  dropZone.addEventListener("drop", (event) => {
    event.preventDefault();
    classifyFile(event.dataTransfer.files[0]);
  });

  document.addEventListener("paste", (event) => {
    const item = [...(event.clipboardData?.items || [])].find((i) => i.type.startsWith("image/"));
    if (item) {
      event.preventDefault();
      classifyFile(item.getAsFile());
    }
  });

  urlForm.addEventListener("submit", (event) => {
    event.preventDefault();
    classifyUrl(urlForm.elements.url.value.trim());
  });

  document.querySelectorAll("[data-example]").forEach((button) =>
    button.addEventListener("click", async () => {
      const response = await fetch(button.dataset.example);
      const blob = await response.blob();
      classifyFile(new File([blob], button.dataset.example.split("/").pop(), { type: blob.type }));
    }),
  );
})();
