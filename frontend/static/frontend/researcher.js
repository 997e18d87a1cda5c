/* Researcher workspace: question set builder, uploads with progress, and job progress that survives a reload. */
(function () {
  "use strict";

  // The page's words, in its language (json_script from the researcher_strings template tag).
  const stringsNode = document.getElementById("researcher-strings");
  const T = stringsNode ? JSON.parse(stringsNode.textContent) : {};
  const t = (key, fallback) => T[key] || fallback;

  const QUESTION_TYPES = ["single", "multiple", "points", "location", "text"].map((type) => [
    type,
    t("type_" + type, type),
  ]);

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([key, value]) => {
      if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (value === true) node.setAttribute(key, "");
      else if (value !== false && value !== null && value !== undefined) node.setAttribute(key, value);
    });
    (children || []).forEach((child) => child && node.appendChild(child));
    return node;
  }

  function labelled(text, input, extraClass) {
    return el("label", { class: extraClass || "" }, [document.createTextNode(text), input]);
  }

  // ------------------------------------------------------------ question set builder

  function initBuilder(builder, textarea) {
    const defaults = JSON.parse(document.getElementById("qs-defaults").textContent);
    const kindSelect = builder.dataset.kindField ? document.getElementById(builder.dataset.kindField) : null;
    let state = null;

    const kind = () => (kindSelect ? kindSelect.value : builder.dataset.kind) || "imagery";
    const write = () => {
      textarea.value = JSON.stringify(state, null, 2);
    };
    const isDefault = () =>
      !textarea.value.trim() || Object.values(defaults).some((d) => JSON.stringify(d, null, 2) === textarea.value);

    function load() {
      if (!textarea.value.trim()) {
        state = JSON.parse(JSON.stringify(defaults[kind()] || defaults.imagery));
        write();
      } else {
        try {
          state = JSON.parse(textarea.value);
        } catch (err) {
          state = null;
        }
      }
      render();
    }

    function newKey(prefix) {
      const keys = new Set((state.questions || []).map((q) => q.key));
      let n = 1;
      while (keys.has(prefix + n)) n += 1;
      return prefix + n;
    }

    function changed(rerender) {
      write();
      if (rerender) render();
    }

    function choiceRow(question, choice, index) {
      const preview = el("img", { alt: "", hidden: !choice.image, src: choice.image || null });
      return el("div", { class: "qs-choice" }, [
        el("input", { type: "text", class: "qs-value", "aria-label": t("value", "Value"), placeholder: t("value_placeholder", "value"), value: choice.value || "", size: 12,
          oninput: (e) => { choice.value = e.target.value.trim(); changed(false); } }),
        el("input", { type: "text", "aria-label": t("label", "Label"), placeholder: t("label_placeholder", "Label shown to volunteers"), value: choice.label || "", size: 22,
          oninput: (e) => { choice.label = e.target.value; changed(false); } }),
        el("input", { type: "text", "aria-label": t("help", "Help"), placeholder: t("help_placeholder", "Help text"), value: choice.help || "", size: 28,
          oninput: (e) => { if (e.target.value) choice.help = e.target.value; else delete choice.help; changed(false); } }),
        el("input", { type: "text", "aria-label": t("image", "Example image URL"), placeholder: t("image", "Example image URL"), value: choice.image || "", size: 22,
          oninput: (e) => {
            if (e.target.value) choice.image = e.target.value.trim(); else delete choice.image;
            preview.hidden = !choice.image;
            if (choice.image) preview.src = choice.image;
            changed(false);
          } }),
        preview,
        el("button", { type: "button", class: "button small-button", text: t("remove", "Remove"),
          onclick: () => { question.choices.splice(index, 1); changed(true); } }),
      ]);
    }

    function questionBox(question, index) {
      const isChoice = question.type === "single" || question.type === "multiple";
      const typeSelect = el("select", { "aria-label": t("type", "Type"),
        onchange: (e) => {
          question.type = e.target.value;
          if ((question.type === "single" || question.type === "multiple") && !Array.isArray(question.choices)) {
            question.choices = [{ value: "yes", label: t("yes", "Yes") }, { value: "no", label: t("no", "No") }];
          }
          if (!(question.type === "single" || question.type === "multiple")) delete question.choices;
          changed(true);
        } }, QUESTION_TYPES.map(([value, text]) => el("option", { value, text, selected: value === question.type })));
      const box = el("div", { class: "qs-question", "data-question": question.key }, [
        el("div", { class: "qs-row" }, [
          labelled(t("key", "Key"), el("input", { type: "text", value: question.key || "", size: 12,
            oninput: (e) => {
              const old = question.key;
              question.key = e.target.value.trim();
              if (state.primary === old) state.primary = question.key;
              changed(false);
            } })),
          labelled(t("type", "Type"), typeSelect),
          isChoice ? labelled(t("primary", "Primary"), el("input", { type: "radio", name: "qs-primary", checked: state.primary === question.key,
            onchange: () => { state.primary = question.key; changed(false); } })) : null,
          labelled(t("required", "Required"), el("input", { type: "checkbox", checked: question.required === true,
            onchange: (e) => { if (e.target.checked) question.required = true; else delete question.required; changed(false); } })),
          el("button", { type: "button", class: "button small-button", text: "↑", "aria-label": t("move_up", "Move up"), disabled: index === 0,
            onclick: () => { state.questions.splice(index - 1, 0, state.questions.splice(index, 1)[0]); changed(true); } }),
          el("button", { type: "button", class: "button small-button", text: t("remove_question", "Remove question"),
            onclick: () => { state.questions.splice(index, 1); changed(true); } }),
        ]),
        el("div", { class: "qs-row" }, [
          labelled(t("question", "Question"), el("input", { type: "text", class: "qs-text", value: question.text || "",
            oninput: (e) => { question.text = e.target.value; changed(false); } }), "wide"),
          labelled(t("help", "Help"), el("input", { type: "text", value: question.help || "",
            oninput: (e) => { if (e.target.value) question.help = e.target.value; else delete question.help; changed(false); } }), "wide"),
        ]),
      ]);
      if (isChoice) {
        const choices = el("div", { class: "qs-choices" }, question.choices.map((c, i) => choiceRow(question, c, i)));
        const hasUnsure = question.choices.some((c) => c.value === "unsure");
        choices.appendChild(el("div", { class: "qs-actions" }, [
          el("button", { type: "button", class: "button small-button", text: t("add_choice", "Add choice"),
            onclick: () => { question.choices.push({ value: "choice" + (question.choices.length + 1), label: "" }); changed(true); } }),
          question.type === "single" && !hasUnsure
            ? el("button", { type: "button", class: "button small-button", text: t("add_unsure", "Add “Unsure”"),
              onclick: () => { question.choices.push({ value: "unsure", label: t("unsure", "Unsure"), help: t("unsure_help", "Never penalised.") }); changed(true); } })
            : null,
        ]));
        box.appendChild(choices);
      }
      return box;
    }

    function render() {
      builder.replaceChildren();
      if (!state || !Array.isArray(state.questions)) {
        builder.appendChild(el("p", { class: "error", text: t("bad_json", "The JSON below cannot be shown as a form; correct it there.") }));
        return;
      }
      state.questions.forEach((q, i) => builder.appendChild(questionBox(q, i)));
      const addType = el("select", { "aria-label": t("new_type", "Type of the new question") },
        QUESTION_TYPES.map(([value, text]) => el("option", { value, text })));
      builder.appendChild(el("div", { class: "qs-actions" }, [
        addType,
        el("button", { type: "button", class: "button", id: "qs-add", text: t("add_question", "Add question"),
          onclick: () => {
            const type = addType.value;
            const question = { key: newKey(type === "text" ? "note" : "q"), type, text: "", required: false };
            if (type === "single" || type === "multiple") {
              question.choices = [{ value: "yes", label: t("yes", "Yes") }, { value: "no", label: t("no", "No") }];
            }
            state.questions.push(question);
            changed(true);
          } }),
      ]));
    }

    if (kindSelect) {
      kindSelect.addEventListener("change", () => {
        if (isDefault()) {
          textarea.value = "";
          load();
        }
      });
    }
    textarea.addEventListener("change", load);
    load();
  }

  // ------------------------------------------------------------ jobs

  function pollJob(item) {
    const url = item.dataset.jobUrl;
    if (!url) return;
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((response) => (response.ok ? response.json() : Promise.reject(new Error(String(response.status)))))
      .then((job) => {
        item.querySelector(".job-bar").value = Math.round(job.progress * 100);
        item.querySelector(".job-status").textContent = job.status_label || job.status;
        item.querySelector(".job-message").textContent = job.summary || "";
        if (job.name) item.querySelector(".job-name").textContent = job.name;
        item.dataset.jobStatus = job.status;
        const count = document.getElementById("task-count");
        if (count && typeof job.campaign_tasks === "number") count.textContent = String(job.campaign_tasks);
        if (job.status === "done") refreshSection("stored-originals");
        if (job.status !== "done" && job.status !== "failed") window.setTimeout(() => pollJob(item), 1000);
      })
      .catch(() => window.setTimeout(() => pollJob(item), 3000));
  }

  // A finished job changed what the page lists below it: take that part of the page afresh.
  function refreshSection(id) {
    const section = document.getElementById(id);
    if (!section) return;
    fetch(window.location.pathname, { credentials: "same-origin" })
      .then((response) => (response.ok ? response.text() : Promise.reject(new Error(String(response.status)))))
      .then((html) => {
        const fresh = new DOMParser().parseFromString(html, "text/html").getElementById(id);
        if (fresh) section.replaceChildren(...fresh.childNodes);
      })
      .catch(() => {});
  }

  function addJob(job) {
    const list = document.getElementById("jobs");
    const template = document.getElementById("job-template");
    const item = template.content.firstElementChild.cloneNode(true);
    item.id = "job-" + job.id;
    item.dataset.jobUrl = job.url;
    item.dataset.jobStatus = job.status;
    item.querySelector(".job-name").textContent = job.name;
    item.querySelector(".job-status").textContent = job.status_label || job.status;
    const empty = document.getElementById("no-jobs");
    if (empty) empty.remove();
    list.prepend(item);
    pollJob(item);
  }

  // ------------------------------------------------------------ uploads

  function initUpload(form) {
    const bar = document.getElementById("upload-bar");
    const percent = document.getElementById("upload-percent");
    const box = document.getElementById("upload-progress");
    const error = document.getElementById("upload-error");
    const submit = document.getElementById("upload-submit");
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const xhr = new XMLHttpRequest();
      xhr.open("POST", form.getAttribute("action") || window.location.pathname);
      xhr.setRequestHeader("X-Requested-With", "XMLHttpRequest");
      xhr.responseType = "text";
      error.hidden = true;
      box.hidden = false;
      submit.disabled = true;
      bar.value = 0;
      xhr.upload.addEventListener("progress", (e) => {
        if (e.lengthComputable) {
          const value = Math.round((100 * e.loaded) / e.total);
          bar.value = value;
          percent.textContent = value + "%";
        }
      });
      xhr.addEventListener("load", () => {
        submit.disabled = false;
        let body = null;
        try {
          body = JSON.parse(xhr.responseText);
        } catch (err) {
          body = { error: t("upload_http", "The server could not take the upload (HTTP %(status)s).").replace("%(status)s", String(xhr.status)) };
        }
        if (xhr.status === 201 && body.job) {
          box.hidden = true;  // the job's own row below takes over: stored, then tiled
          form.reset();
          addJob(body.job);
        } else {
          box.hidden = true;
          error.textContent = body.error || t("upload_refused", "The upload was refused.");
          error.hidden = false;
        }
      });
      xhr.addEventListener("error", () => {
        submit.disabled = false;
        box.hidden = true;
        error.textContent = t("upload_interrupted", "The upload was interrupted; check the connection and try again.");
        error.hidden = false;
      });
      xhr.send(new FormData(form));
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const builder = document.getElementById("qs-builder");
    const textarea = document.getElementById("id_question_set");
    if (builder && textarea) initBuilder(builder, textarea);
    const upload = document.querySelector("form[data-upload]");
    if (upload) initUpload(upload);
    document.querySelectorAll("[data-job-url]").forEach((item) => {
      if (item.dataset.jobStatus !== "done" && item.dataset.jobStatus !== "failed") pollJob(item);
    });
  });
})();
