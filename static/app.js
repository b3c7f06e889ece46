// Progressive enhancement of the home page: with this script, photos are chosen by
// click, drag-and-drop, paste, camera or example, previewed, and sent without a page
// reload; the server answers with the answer's part of the page, drawn as it draws it
// without the script, and "Was it right?" under it is answered in place the same way.
// Without it, the same forms post and the server renders the page.
"use strict";

(() => {
  const endpoint = document.getElementById("upload-form").action;
  const dropZone = document.getElementById("drop-zone");
  const fileInput = document.getElementById("file");
  const cameraInput = document.getElementById("camera");
  const urlForm = document.getElementById("url-form");
  const output = document.getElementById("output");
  const status = document.getElementById("status");
  const answer = document.getElementById("answer");
  const errorBox = () => document.getElementById("error");
  const figure = document.getElementById("preview-figure");
  const preview = document.getElementById("preview");
  let previewUrl = null;

  // The code samples name the API's URL as the browser reached it: behind a proxy that
  // ends TLS, the server's own idea of its scheme can be http (docs/deploy.md).
  document.querySelectorAll("[data-url]").forEach((node) => {
    node.textContent = new URL(node.dataset.url, document.baseURI).href;
  });

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
    if (on) answer.querySelectorAll("#error, #result").forEach((box) => (box.hidden = true));
  }

  // What the server can't draw: a network failure, or an answer that isn't the app's
  // (a proxy's error page, the plain-text 503 of a server at its connection limit).
  function problem(message, code, status) {
    return [
      el("p", {}, message),
      el("p", { class: "muted" }, "Error ", el("code", {}, code), ` (HTTP ${status})`),
    ];
  }

  function showProblem(parts) {
    busy(false);
    errorBox().replaceChildren(el("h2", {}, "That didn't work"), ...parts);
    errorBox().hidden = false;
  }

  function unexpected(response) {
    const busyNow = response.status === 503 ? " It is busy: try again in a moment." : "";
    const said = `${response.status} ${response.statusText}`.trim();
    return problem(`The server answered ${said}.${busyNow}`, "unexpected_response", response.status);
  }

  // The app's answer fragment always holds the error box (templates/answer.html): parsed,
  // or null for an answer that isn't the app's.
  function fragment(response, html) {
    if (!(response.headers.get("Content-Type") || "").startsWith("text/html")) return null;
    const parsed = document.createElement("template");
    parsed.innerHTML = html;
    return parsed.content.getElementById("error") ? parsed.content : null;
  }

  // The server draws the answer (or the error) as it does without JavaScript: its
  // fragment, templates/answer.html with the kind's partial, replaces the old one.
  function showAnswer(html) {
    busy(false);
    answer.innerHTML = html;
    // An answer drawn on the photo (points, a mask) brings the photo itself.
    if (answer.querySelector("[data-replaces-preview]")) figure.hidden = true;
    if (output.getBoundingClientRect().top > window.innerHeight * 0.6) {
      output.scrollIntoView({ behavior: "smooth", block: "start" });  // a phone's fold
    }
  }

  async function classify(request, previewSrc) {
    showPreview(previewSrc);
    busy(true);
    let response, html;
    try {
      const headers = { Accept: "text/html", "X-Pounce-Fragment": "1", ...request.headers };
      response = await fetch(endpoint, { method: "POST", ...request, headers });
      html = await response.text();
    } catch (error) {
      showProblem(problem("The server could not be reached.", "network_error", 0));
      return;
    }
    if (fragment(response, html)) {
      showAnswer(html);
    } else {
      showProblem(unexpected(response));
    }
  }

  // "Was it right?" (templates/feedback.html): its forms post what they post without the
  // script, and the server's fragment (its notice or its error) is shown under the
  // answer, which stays. Thanked, the forms go: a prediction is answered once.
  async function sendFeedback(form) {
    const section = form.closest("[data-feedback]");
    const thanks = section.querySelector(".feedback-said");
    const failed = section.querySelector(".feedback-error");
    const buttons = section.querySelectorAll("button");
    buttons.forEach((button) => (button.disabled = true));
    failed.hidden = true;
    let response, parsed;
    try {
      response = await fetch(form.action, {
        method: "POST",
        body: new URLSearchParams(new FormData(form)),
        headers: { Accept: "text/html", "X-Pounce-Fragment": "1" },
      });
      parsed = fragment(response, await response.text());
    } catch (error) {
      failed.replaceChildren(...problem("The server could not be reached.", "network_error", 0));
    }
    buttons.forEach((button) => (button.disabled = false));
    const notice = parsed?.getElementById("notice");
    if (notice && !notice.hidden) {
      section.querySelector(".feedback-forms").remove();
      thanks.replaceChildren(...notice.childNodes);
      thanks.hidden = false;
      thanks.focus();
      return;
    }
    if (parsed) failed.replaceChildren(...parsed.getElementById("error").querySelectorAll("p"));
    else if (response) failed.replaceChildren(...unexpected(response));
    failed.hidden = false;
  }

  answer.addEventListener("submit", (event) => {
    const form = event.target.closest("[data-feedback-form]");
    if (!form) return;
    event.preventDefault();
    sendFeedback(form);
  });

  function classifyFile(file) {
    if (!file) return;
    const body = new FormData();
    body.append("file", file, file.name || "pasted-image");
    classify({ body }, URL.createObjectURL(file));
  }

  function classifyUrl(url) {
    classify({ body: JSON.stringify({ url }), headers: { "Content-Type": "application/json" } }, url);
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
