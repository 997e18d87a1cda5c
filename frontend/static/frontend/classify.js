// Classify page: lease a task, show its media, collect the answer, submit it idempotently, repeat.
(function () {
  "use strict";
  const root = document.getElementById("classify");
  if (!root) return;
  const slug = root.dataset.slug;
  const $ = (id) => document.getElementById(id);
  let current = null;      // the leased task payload
  let clientId = null;     // idempotency key of the pending answer
  let startedAt = 0;
  let points = [];
  let flicker = false;

  function cookie(name) {
    const match = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return match ? decodeURIComponent(match[1]) : "";
  }

  async function api(method, url, body) {
    const response = await fetch(url, {
      method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": cookie("csrftoken"), Accept: "application/json" },
      body: body ? JSON.stringify(body) : undefined,
    });
    let data = null;
    if (response.status !== 204) {
      try { data = await response.json(); } catch (e) { data = null; }
    }
    return { status: response.status, data };
  }

  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return "10000000-1000-4000-8000-100000000000".replace(/[018]/g, (c) =>
      (c ^ (crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (c / 4)))).toString(16));
  }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => {
      if (k === "text") node.textContent = v; else if (v !== null && v !== undefined) node.setAttribute(k, v);
    });
    (children || []).forEach((c) => node.appendChild(c));
    return node;
  }

  function renderMedia(task) {
    const box = $("media");
    box.innerHTML = "";
    points = [];
    const media = task.media || {};
    if (task.kind === "tile") {
      const pair = el("div", { class: "pair" });
      const before = el("figure", { class: "tile" }, [
        el("img", { src: media.before, alt: "Before", width: "256", height: "256", id: "img-before" }),
        el("figcaption", { text: media.after ? "Before" : "Image" }),
      ]);
      pair.appendChild(before);
      if (media.after) {
        pair.appendChild(el("figure", { class: "tile" }, [
          el("img", { src: media.after, alt: "After", width: "256", height: "256", id: "img-after" }),
          el("figcaption", { text: "After" }),
        ]));
      }
      box.appendChild(pair);
      const target = media.after ? $("img-after") : $("img-before");
      target.addEventListener("click", (event) => {
        const rect = target.getBoundingClientRect();
        const scale = (task.window && task.window.width ? task.window.width : target.naturalWidth) / rect.width;
        points.push([Math.round((event.clientX - rect.left) * scale), Math.round((event.clientY - rect.top) * scale)]);
        const dot = el("span", { class: "dot", style: `left:${event.clientX - rect.left}px;top:${event.clientY - rect.top}px` });
        target.parentElement.appendChild(dot);
      });
    } else {
      const strip = el("div", { class: "keyframes" });
      (media.keyframes || []).forEach((k, i) => {
        const src = typeof k === "string" ? k : k.url;
        strip.appendChild(el("img", { src, alt: "Keyframe " + (i + 1), loading: "lazy", class: task.flags && task.flags.graphic ? "blurred" : null }));
      });
      box.appendChild(strip);
      if (media.clip) {
        const video = el("video", { controls: "", preload: "metadata", playsinline: "", src: `${media.clip}#t=${task.start_seconds},${task.end_seconds}` });
        video.addEventListener("timeupdate", () => { if (video.currentTime > task.end_seconds) video.pause(); });
        box.appendChild(video);
      }
    }
  }

  function renderQuestions(questionSet) {
    const primary = questionSet.questions.find((q) => q.key === questionSet.primary);
    $("primary-text").textContent = primary.text;
    const choices = $("choices");
    choices.innerHTML = "";
    primary.choices.forEach((choice, i) => {
      const id = `choice-${choice.value}`;
      const input = el("input", { type: primary.type === "multiple" ? "checkbox" : "radio", name: "primary", value: choice.value, id });
      input.addEventListener("change", () => { $("submit").disabled = false; });
      const shortcut = choice.value === "unsure" ? "u" : String(i + 1);
      choices.appendChild(el("label", { class: "choice", for: id, "data-key": shortcut, title: choice.help || "" }, [
        input, el("span", { class: "key", text: shortcut }), el("span", { text: choice.label }),
      ]));
    });
    const extra = $("extra");
    extra.innerHTML = "";
    questionSet.questions.filter((q) => q.key !== questionSet.primary).forEach((q) => {
      const id = `q-${q.key}`;
      if (q.type === "text") {
        extra.appendChild(el("label", { for: id, text: q.text }));
        extra.appendChild(el("textarea", { id, name: q.key, rows: "2", maxlength: "5000" }));
      } else if (q.type === "single" || q.type === "multiple") {
        const fs = el("fieldset", { class: "secondary", "data-key": q.key }, [el("legend", { text: q.text })]);
        q.choices.forEach((c) => {
          const cid = `${id}-${c.value}`;
          fs.appendChild(el("label", { for: cid, class: "small-choice" }, [
            el("input", { type: q.type === "single" ? "radio" : "checkbox", name: q.key, value: c.value, id: cid }),
            el("span", { text: c.label }),
          ]));
        });
        extra.appendChild(fs);
      } else if (q.type === "location") {
        const fs = el("fieldset", { class: "secondary", "data-key": q.key }, [el("legend", { text: q.text })]);
        fs.appendChild(el("label", { for: `${id}-lat`, text: "Latitude" }));
        fs.appendChild(el("input", { id: `${id}-lat`, name: `${q.key}-lat`, inputmode: "decimal", size: "8" }));
        fs.appendChild(el("label", { for: `${id}-lon`, text: "Longitude" }));
        fs.appendChild(el("input", { id: `${id}-lon`, name: `${q.key}-lon`, inputmode: "decimal", size: "8" }));
        extra.appendChild(fs);
      } else if (q.type === "points") {
        extra.appendChild(el("p", { class: "small", text: q.text + " (click on the image)" }));
      }
    });
    $("submit").disabled = true;
  }

  function collectAnswer(questionSet) {
    const form = $("answer-form");
    const answer = {};
    questionSet.questions.forEach((q) => {
      if (q.key === questionSet.primary) {
        const picked = [...form.querySelectorAll("input[name=primary]:checked")].map((i) => i.value);
        answer[q.key] = q.type === "multiple" ? picked : picked[0];
      } else if (q.type === "text") {
        const v = form.querySelector(`[name="${q.key}"]`).value.trim();
        if (v) answer[q.key] = v;
      } else if (q.type === "single") {
        const picked = form.querySelector(`input[name="${q.key}"]:checked`);
        if (picked) answer[q.key] = picked.value;
      } else if (q.type === "multiple") {
        const picked = [...form.querySelectorAll(`input[name="${q.key}"]:checked`)].map((i) => i.value);
        if (picked.length) answer[q.key] = picked;
      } else if (q.type === "location") {
        const lat = parseFloat(form.querySelector(`[name="${q.key}-lat"]`).value);
        const lon = parseFloat(form.querySelector(`[name="${q.key}-lon"]`).value);
        if (!Number.isNaN(lat) && !Number.isNaN(lon)) answer[q.key] = { lon, lat };
      } else if (q.type === "points") {
        if (points.length) answer[q.key] = points;
      }
    });
    return answer;
  }

  async function next() {
    $("feedback").hidden = true;
    $("error").textContent = "";
    const { status, data } = await api("POST", `/api/v1/campaigns/${slug}/next-task`);
    if (status === 204) {
      $("stage").hidden = true;
      $("done").hidden = false;
      $("progress").textContent = "";
      return;
    }
    if (status !== 200) {
      $("progress").textContent = (data && data.detail) || "Could not load a task; retrying shortly.";
      setTimeout(next, 5000);
      return;
    }
    current = data;
    clientId = uuid();
    startedAt = Date.now();
    renderMedia(data.task);
    renderQuestions(data.question_set);
    $("stage").hidden = false;
    $("progress").textContent = `You answered ${data.progress.answered} task(s) in this campaign`;
    const expires = new Date(data.lease_expires_at);
    $("lease").textContent = `This task is reserved for you until ${expires.toLocaleTimeString()}`;
    root.dataset.taskId = data.task.id;
    root.dataset.ready = "1";
  }

  async function submit(event) {
    if (event) event.preventDefault();
    if (!current) return;
    const answer = collectAnswer(current.question_set);
    $("submit").disabled = true;
    root.dataset.ready = "0";
    const { status, data } = await api("POST", `/api/v1/tasks/${current.task.id}/answers`, {
      answer, client_id: clientId, duration_ms: Date.now() - startedAt,
    });
    if (status === 201 || status === 200) {
      root.dataset.answered = String(Number(root.dataset.answered || 0) + 1);
      if (data.feedback && data.feedback.gold) {
        const fb = $("feedback");
        fb.hidden = false;
        fb.textContent = (data.feedback.correct ? "Well spotted! " : "Not quite. ") +
          "Experts answered: " + JSON.stringify(data.feedback.expected[current.question_set.primary]) +
          (data.feedback.explanation ? ". " + data.feedback.explanation : "");
        setTimeout(next, 2500);
      } else {
        next();
      }
    } else if (status === 400) {
      const errors = (data && data.errors) || {};
      $("error").textContent = Object.entries(errors).map(([k, v]) => `${k}: ${v}`).join("; ") || "Invalid answer";
      $("submit").disabled = false;
      root.dataset.ready = "1";
    } else if (status === 409) {
      next();
    } else {
      $("error").textContent = "Could not send your answer; it will be retried.";
      setTimeout(submit, 3000);
    }
  }

  document.addEventListener("keydown", (event) => {
    if (!current || ["TEXTAREA", "INPUT"].includes(event.target.tagName) && event.target.type !== "radio" && event.target.type !== "checkbox") return;
    const label = [...document.querySelectorAll("#choices label")].find((l) => l.dataset.key === event.key);
    if (label) {
      const input = label.querySelector("input");
      input.checked = input.type === "checkbox" ? !input.checked : true;
      input.dispatchEvent(new Event("change"));
      event.preventDefault();
    } else if (event.key === "Enter" && !$("submit").disabled) {
      submit(event);
    } else if (event.key === "f") {
      const after = $("img-after");
      if (after) { flicker = !flicker; after.parentElement.classList.toggle("flicker", flicker); }
    } else if (event.key === "?") {
      $("help").hidden = !$("help").hidden;
    }
  });
  $("answer-form").addEventListener("submit", submit);
  $("help-toggle").addEventListener("click", () => {
    const help = $("help");
    help.hidden = !help.hidden;
    $("help-toggle").setAttribute("aria-expanded", String(!help.hidden));
  });
  next();
})();
