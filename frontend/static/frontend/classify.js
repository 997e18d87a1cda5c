// Classify page: lease a task, show its media, collect the answer, submit it idempotently, repeat.
// No framework: the page must stay light on a slow phone. Strings come translated from the page
// (json_script), since the Content-Security-Policy allows no inline script.
(function () {
  "use strict";
  const root = document.getElementById("classify");
  if (!root) return;
  const slug = root.dataset.slug;
  const $ = (id) => document.getElementById(id);
  const T = JSON.parse($("classify-strings").textContent);
  const GRAPHIC_RUN_BREAK = 5;   // suggest a break after this many graphic items in a row
  const RENEW_BELOW_S = 120;     // renew the lease when less than this is left and the volunteer is active

  let current = null;            // the leased task payload
  let clientId = null;           // idempotency key of the pending answer
  let startedAt = 0;
  let points = [];               // marks in tile pixels
  let mode = "side";             // side | swipe | flicker
  let zoom = { s: 1, x: 0, y: 0 };
  let flickerTimer = null;
  let leaseExpires = 0;
  let lastActivity = Date.now();
  let pending = null;            // promise of the next lease: brought back by the answer, or asked for
  let sending = false;
  let proofsRefused = 0;         // proofs of work refused in a row (see handleLease)
  const MAX_PROOFS_REFUSED = 3;

  function fmt(text, values) {
    return String(text).replace(/%\((\w+)\)s/g, (_, k) => (values && k in values ? values[k] : ""));
  }

  function cookie(name) {
    const match = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return match ? decodeURIComponent(match[1]) : "";
  }

  async function api(method, url, body, extraHeaders) {
    try {
      const response = await fetch(url, {
        method,
        credentials: "same-origin",
        headers: Object.assign(
          { "Content-Type": "application/json", "X-CSRFToken": cookie("csrftoken"), Accept: "application/json" },
          extraHeaders || {}),
        body: body ? JSON.stringify(body) : undefined,
      });
      let data = null;
      if (response.status !== 204) {
        try { data = await response.json(); } catch (e) { data = null; }
      }
      return { status: response.status, data };
    } catch (e) {
      return { status: 0, data: null };
    }
  }

  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return "10000000-1000-4000-8000-100000000000".replace(/[018]/g, (c) =>
      (c ^ (crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (c / 4)))).toString(16));
  }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => {
      if (k === "text") node.textContent = v;
      else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? "" : v);
    });
    (children || []).forEach((c) => node.appendChild(c));
    return node;
  }

  function prefetch(task) {
    const media = (task && task.media) || {};
    const urls = [media.before, media.after, ...(media.keyframes || []).map((k) => (typeof k === "string" ? k : k.url))];
    urls.filter(Boolean).forEach((url) => { const img = new Image(); img.src = url; });
  }

  function pointsQuestion() {
    return current && current.question_set.questions.find((q) => q.type === "points");
  }

  // ------------------------------------------------------------------ imagery

  function tileSize(task, img) {
    const w = task.window && task.window.width ? task.window.width : img.naturalWidth || 256;
    const h = task.window && task.window.height ? task.window.height : img.naturalHeight || 256;
    return [w, h];
  }

  function applyZoom() {
    document.querySelectorAll("#media .layer").forEach((layer) => {
      layer.style.transform = `scale(${zoom.s}) translate(${zoom.x}%, ${zoom.y}%)`;
    });
    $("zoom-reset").textContent = `${zoom.s}×`;
  }

  function setZoom(scale) {
    zoom.s = Math.min(8, Math.max(1, scale));
    if (zoom.s === 1) { zoom.x = 0; zoom.y = 0; }
    clampPan();
    applyZoom();
  }

  function clampPan() {
    const limit = 50 - 50 / zoom.s;
    zoom.x = Math.max(-limit, Math.min(limit, zoom.x));
    zoom.y = Math.max(-limit, Math.min(limit, zoom.y));
  }

  function pan(dx, dy) {
    zoom.x += dx / zoom.s;
    zoom.y += dy / zoom.s;
    clampPan();
    applyZoom();
  }

  function drawDots() {
    const layer = document.querySelector("#media .layer.target");
    if (!layer || !current) return;
    layer.querySelectorAll(".dot").forEach((d) => d.remove());
    const img = layer.querySelector("img.marked");
    const [w, h] = tileSize(current.task, img);
    points.forEach(([x, y], i) => {
      layer.appendChild(el("span", { class: "dot", style: `left:${(100 * x) / w}%;top:${(100 * y) / h}%`, "aria-hidden": "true", "data-n": String(i + 1) }));
    });
    $("marks-count").textContent = fmt(T.marks, { count: points.length });
    $("marks-undo").disabled = points.length === 0;
  }

  function markable(img) {
    if (!pointsQuestion()) return;
    img.classList.add("marked");
    img.addEventListener("click", (event) => {
      const rect = img.getBoundingClientRect();
      const [w, h] = tileSize(current.task, img);
      const x = Math.round(((event.clientX - rect.left) / rect.width) * w);
      const y = Math.round(((event.clientY - rect.top) / rect.height) * h);
      if (x < 0 || y < 0 || x > w || y > h) return;
      points.push([x, y]);
      drawDots();
    });
  }

  function renderTile(task) {
    const box = $("media");
    box.innerHTML = "";
    stopFlicker();
    const media = task.media || {};
    const hasAfter = Boolean(media.after);
    const viewer = el("div", { class: `viewer mode-${hasAfter ? mode : "side"}` });
    const image = (src, id, alt) => el("img", { src, id, alt, width: "256", height: "256", draggable: "false" });
    if (!hasAfter || mode === "side") {
      const before = el("div", { class: "layer" + (hasAfter ? "" : " target") }, [image(media.before, "img-before", hasAfter ? T.before : T.image)]);
      viewer.appendChild(el("figure", { class: "tile" }, [el("div", { class: "frame" }, [before]), el("figcaption", { text: hasAfter ? T.before : T.image })]));
      if (hasAfter) {
        const after = el("div", { class: "layer target" }, [image(media.after, "img-after", T.after)]);
        viewer.appendChild(el("figure", { class: "tile" }, [el("div", { class: "frame" }, [after]), el("figcaption", { text: T.after })]));
      }
    } else {
      // Swipe and flicker stack the after image over the before image in one frame.
      const layer = el("div", { class: "layer target stack" }, [
        image(media.before, "img-before", T.before),
        image(media.after, "img-after", T.after),
      ]);
      const caption = el("figcaption", { id: "stack-caption", text: mode === "swipe" ? `${T.before} | ${T.after}` : T.after });
      viewer.appendChild(el("figure", { class: "tile single" }, [el("div", { class: "frame" }, [layer]), caption]));
    }
    box.appendChild(viewer);
    const target = box.querySelector(".layer.target img:last-child");
    markable(target);
    document.querySelectorAll("#tools [data-mode]").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.mode === mode)));
    document.querySelector("#tools .modes").hidden = !hasAfter;
    $("swipe").parentElement.hidden = !(hasAfter && mode === "swipe");
    if (hasAfter && mode === "swipe") swipeTo($("swipe").value);
    if (hasAfter && mode === "flicker") startFlicker();
    applyZoom();
    drawDots();
  }

  function swipeTo(value) {
    const after = $("img-after");
    if (after) after.style.clipPath = `inset(0 ${100 - Number(value)}% 0 0)`;
  }

  function startFlicker() {
    let showAfter = true;
    flickerTimer = setInterval(() => {
      showAfter = !showAfter;
      const after = $("img-after");
      if (after) after.style.visibility = showAfter ? "visible" : "hidden";
      const caption = $("stack-caption");
      if (caption) caption.textContent = showAfter ? T.after : T.before;
    }, 700);
  }

  function stopFlicker() {
    if (flickerTimer) clearInterval(flickerTimer);
    flickerTimer = null;
  }

  function setMode(next) {
    if (!current || current.task.kind !== "tile" || !current.task.media.after) return;
    mode = next;
    renderTile(current.task);
  }

  // ------------------------------------------------------------------ video

  function renderSegment(task, graphic, optIn) {
    const box = $("media");
    box.innerHTML = "";
    const media = task.media || {};
    const start = task.start_seconds || 0;
    const end = task.end_seconds || start + 10;
    const wrap = el("div", { class: "video-wrap" + (graphic && !optIn ? " blurred" : "") });
    let video = null;
    if (media.clip) {
      video = el("video", { controls: true, preload: "metadata", playsinline: true, muted: true, src: `${media.clip}#t=${start},${end}`, id: "clip" });
      video.addEventListener("timeupdate", () => { if (video.currentTime >= end) video.pause(); });
    }
    const strip = el("div", { class: "keyframes", role: "group", "aria-label": fmt(T.segment, { start: start.toFixed(1), end: end.toFixed(1) }) });
    (media.keyframes || []).forEach((k) => {
      const src = typeof k === "string" ? k : k.url;
      const time = typeof k === "string" ? start : k.time;
      const label = fmt(T.keyframe, { time: Number(time).toFixed(1) });
      const button = el("button", { type: "button", class: "keyframe", "aria-label": label, title: label }, [el("img", { src, alt: "" })]);
      button.addEventListener("click", () => {
        if (!video) return;
        video.pause();
        video.currentTime = Math.max(start, Math.min(end, Number(time)));
      });
      strip.appendChild(button);
    });
    wrap.appendChild(strip);
    const full = el("p", { class: "small keyframe-links" }, [el("span", { text: T.full_size + " " })]);
    (media.keyframes || []).forEach((k, i) => {
      if (typeof k === "string") return;
      full.appendChild(el("a", { href: k.url, download: "", text: `${Number(k.time).toFixed(1)} s` }));
      if (i < media.keyframes.length - 1) full.appendChild(document.createTextNode(" · "));
    });
    wrap.appendChild(full);
    (task.near_duplicates || []).forEach((m) => {
      wrap.appendChild(el("p", { class: "notice near-duplicate", text: fmt(T.seen_before, {
        source: m.matches_source, start: Number(m.matches_segment[0]).toFixed(1), end: Number(m.matches_segment[1]).toFixed(1),
      }) }));
    });
    if (video) {
      wrap.appendChild(video);
      const play = el("button", { type: "button", class: "button", id: "play-segment", text: `▶ ${T.play_segment} (${start.toFixed(1)}–${end.toFixed(1)} s)` });
      play.addEventListener("click", () => {
        video.currentTime = start;
        video.play().catch(() => {});
      });
      box.appendChild(wrap);
      box.appendChild(play);
    } else {
      box.appendChild(wrap);
    }
    const gate = $("graphic-gate");
    gate.hidden = !graphic;
    $("graphic-text").textContent = graphic ? (optIn ? T.graphic_notice : T.graphic_warning) : "";
    $("graphic-show").hidden = !graphic || optIn;
  }

  // ------------------------------------------------------------------ questions

  function renderQuestions(questionSet) {
    const primary = questionSet.questions.find((q) => q.key === questionSet.primary);
    $("primary-text").textContent = primary.text;
    const choices = $("choices");
    choices.innerHTML = "";
    let n = 0;
    primary.choices.forEach((choice) => {
      const id = `choice-${choice.value}`;
      const shortcut = choice.value === "unsure" ? "u" : String(++n);
      const input = el("input", { type: primary.type === "multiple" ? "checkbox" : "radio", name: "primary", value: choice.value, id });
      input.addEventListener("change", () => { $("submit").disabled = !anyPicked(); });
      const help = choice.help ? el("span", { class: "choice-help", text: choice.help }) : null;
      choices.appendChild(el("label", { class: "choice", for: id, "data-key": shortcut }, [
        input, el("kbd", { class: "key", text: shortcut, "aria-hidden": "true" }),
        el("span", { class: "choice-text" }, [el("span", { text: choice.label }), ...(help ? [help] : [])]),
      ]));
    });
    const extra = $("extra");
    extra.innerHTML = "";
    questionSet.questions.filter((q) => q.key !== questionSet.primary).forEach((q) => {
      const id = `q-${q.key}`;
      if (q.type === "text") {
        extra.appendChild(el("label", { for: id, class: "block", text: q.text }));
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
        const fs = el("fieldset", { class: "secondary location", "data-key": q.key }, [el("legend", { text: q.text })]);
        fs.appendChild(el("label", { for: `${id}-lat`, text: T.latitude }));
        fs.appendChild(el("input", { id: `${id}-lat`, name: `${q.key}-lat`, inputmode: "decimal", autocomplete: "off" }));
        fs.appendChild(el("label", { for: `${id}-lon`, text: T.longitude }));
        fs.appendChild(el("input", { id: `${id}-lon`, name: `${q.key}-lon`, inputmode: "decimal", autocomplete: "off" }));
        extra.appendChild(fs);
      }
    });
    const marks = pointsQuestion();
    $("marks").hidden = !marks || current.task.kind !== "tile";
    if (marks) $("marks-hint").textContent = `${marks.text} ${T.mark_hint}`;
    $("submit").disabled = true;
  }

  function anyPicked() {
    return $("answer-form").querySelectorAll("input[name=primary]:checked").length > 0;
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
        if (points.length && current.task.kind === "tile") answer[q.key] = points.slice();
      }
    });
    return answer;
  }

  function labelOf(questionSet, value) {
    const primary = questionSet.questions.find((q) => q.key === questionSet.primary);
    const values = Array.isArray(value) ? value : [value];
    return values.map((v) => ((primary.choices || []).find((c) => c.value === v) || { label: v }).label).join(", ");
  }

  // ------------------------------------------------------------------ flow

  function showProgress(progress) {
    $("progress").textContent = fmt(T.progress, {
      today: progress.answered_today, here: progress.answered, percent: `${progress.campaign_percent}%`,
    });
  }

  function show(data) {
    current = data;
    clientId = uuid();
    startedAt = Date.now();
    points = [];
    zoom = { s: 1, x: 0, y: 0 };
    const isTile = data.task.kind === "tile";
    $("tools").hidden = !isTile;
    $("graphic-gate").hidden = true;
    if (isTile) renderTile(data.task); else renderSegment(data.task, data.graphic, data.graphic_opt_in);
    renderQuestions(data.question_set);
    $("stage").hidden = false;
    $("feedback").hidden = true;
    $("break").hidden = true;
    showProgress(data.progress);
    leaseExpires = new Date(data.lease_expires_at).getTime();
    tickLease();
    root.dataset.taskId = data.task.id;
    root.dataset.graphic = data.graphic ? "1" : "0";
    root.dataset.ready = "1";
    const first = document.querySelector("#choices input");
    if (first && document.activeElement && document.activeElement.id === "feedback-next") first.focus();
  }

  async function lease(headers) {
    const { status, data } = await api("POST", `/api/v1/campaigns/${slug}/next-task`, undefined, headers);
    return { status, data };
  }

  async function next() {
    $("error").textContent = "";
    root.dataset.ready = "0";
    // A lease requested during the feedback panel may still be in flight: wait for it rather than asking
    // twice, or the late answer would later show a task this volunteer has already answered.
    const waiting = pending;
    pending = null;
    const got = waiting ? await waiting : await lease();
    handleLease(got);
  }

  function handleLease({ status, data }) {
    if (status === 200) { proofsRefused = 0; show(data); return; }
    if (status === 204) {
      current = null;
      $("stage").hidden = true;
      $("feedback").hidden = true;
      $("done").hidden = false;
      $("lease").textContent = "";
      root.dataset.done = "1";
      return;
    }
    // A proof can be refused (it expired in a background tab, say): solve a fresh one, but after a few
    // refusals in a row stop spending the phone's battery and wait for the window instead.
    if (status === 429 && data && data.proof && data.proof.challenge && proofsRefused < MAX_PROOFS_REFUSED) {
      // The site is busy with newcomers: a moment of work by this browser lets us in instead of waiting.
      $("progress").textContent = T.joining;
      admitWithProof(data.proof);
      return;
    }
    const wait = status === 429 && data && data.retry_after ? Math.ceil(data.retry_after) * 1000 : 5000;
    $("progress").textContent = status === 429 ? T.slow_down : ((data && data.detail) || T.load_failed);
    setTimeout(next, wait);
  }

  async function admitWithProof(proof) {
    const started = Date.now();
    const solved = await window.CorroborateProof.solve(proof.challenge, proof.bits);
    root.dataset.proofMs = String(Date.now() - started);
    const got = await lease({ [proof.header || "X-Newcomer-Proof"]: solved });
    if (got.status === 429) proofsRefused += 1;
    handleLease(got);
  }

  function graphicRun(wasGraphic) {
    const run = wasGraphic ? Number(sessionStorage.getItem("graphic-run") || 0) + 1 : 0;
    sessionStorage.setItem("graphic-run", String(run));
    return run;
  }

  async function submit(event) {
    if (event) event.preventDefault();
    if (!current || sending || !anyPicked()) return;
    sending = true;
    const answer = collectAnswer(current.question_set);
    $("submit").disabled = true;
    root.dataset.ready = "0";
    const { status, data } = await api("POST", `/api/v1/tasks/${current.task.id}/answers`, {
      answer, client_id: clientId, duration_ms: Date.now() - startedAt, next: true,
    });
    sending = false;
    if (status === 201 || status === 200) {
      // The answer came back with the next task already leased (one request per task, which matters on a
      // slow phone connection): start fetching its images now.
      if ("next" in data) {
        pending = Promise.resolve({ status: data.next ? 200 : 204, data: data.next });
        if (data.next) prefetch(data.next.task);
      }
      // The volunteer's counts include this answer at once, also while gold feedback or a break is shown:
      // the next task's progress was counted after it; without one, count it here.
      if (data.next && data.next.progress) {
        showProgress(data.next.progress);
      } else if (status === 201 && current.progress) {
        showProgress({ ...current.progress, answered_today: current.progress.answered_today + 1,
          answered: current.progress.answered + 1 });
      }
      root.dataset.answered = String(Number(root.dataset.answered || 0) + 1);
      const run = graphicRun(current.graphic);
      const primary = current.question_set.primary;
      if (data.feedback && data.feedback.gold) {
        showFeedback(data.feedback, answer[primary]);
        // Lease the next task now and fetch its images while the volunteer reads the feedback.
        prefetchNext();
      } else if (run > 0 && run % GRAPHIC_RUN_BREAK === 0) {
        $("stage").hidden = true;
        $("break-text").textContent = T.break;
        $("break").hidden = false;
        $("break-continue").focus();
        prefetchNext();
      } else {
        next();
      }
    } else if (status === 400) {
      const errors = (data && data.errors) || {};
      $("error").textContent = Object.entries(errors).map(([k, v]) => `${k}: ${v}`).join("; ") || T.invalid;
      $("submit").disabled = false;
      root.dataset.ready = "1";
    } else if (status === 409) {
      next();
    } else {
      const wait = status === 429 && data && data.retry_after ? Math.ceil(data.retry_after) * 1000 : 3000;
      $("error").textContent = status === 429 ? T.slow_down : T.send_failed;
      setTimeout(() => { $("submit").disabled = false; submit(); }, wait);
    }
  }

  function showFeedback(feedback, given) {
    const qs = current.question_set;
    const expected = feedback.expected ? feedback.expected[qs.primary] : null;
    const box = $("feedback-text");
    box.innerHTML = "";
    const unsure = given === "unsure";
    const verdict = unsure ? T.unsure_fine : (feedback.correct ? T.correct : T.incorrect);
    box.appendChild(el("p", { class: "verdict " + (feedback.correct ? "good" : unsure ? "neutral" : "bad"), text: verdict }));
    box.appendChild(el("p", { text: `${T.practice} ${fmt(T.expert_answer, { label: labelOf(qs, expected) })}` }));
    if (feedback.explanation) box.appendChild(el("p", { class: "explanation", text: feedback.explanation }));
    $("stage").hidden = true;
    $("feedback").hidden = false;
    root.dataset.feedback = String(Number(root.dataset.feedback || 0) + 1);
    $("feedback-next").focus();
  }

  function prefetchNext() {
    if (pending) return; // already leased with the answer
    pending = lease();
    pending.then((got) => { if (got.status === 200) prefetch(got.data.task); });
  }

  function continueAfterPanel() {
    $("feedback").hidden = true;
    $("break").hidden = true;
    next();
  }

  // ------------------------------------------------------------------ lease timer

  function tickLease() {
    if (!current) return;
    const left = Math.max(0, Math.round((leaseExpires - Date.now()) / 1000));
    const text = left > 0 ? fmt(T.lease, { time: `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}` }) : T.lease_lost;
    $("lease").textContent = text;
    if (left > 0 && left < RENEW_BELOW_S && Date.now() - lastActivity < 180000 && !tickLease.renewing) {
      tickLease.renewing = true;
      api("POST", `/api/v1/tasks/${current.task.id}/lease`).then(({ status, data }) => {
        tickLease.renewing = false;
        if (status === 200) leaseExpires = new Date(data.lease_expires_at).getTime();
      });
    }
  }
  setInterval(tickLease, 1000);

  // ------------------------------------------------------------------ events

  ["pointerdown", "keydown", "scroll"].forEach((type) => document.addEventListener(type, () => { lastActivity = Date.now(); }, { passive: true }));

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const tag = event.target.tagName;
    const typing = tag === "TEXTAREA" || tag === "SELECT" || (tag === "INPUT" && !["radio", "checkbox", "range"].includes(event.target.type));
    if (typing) return;
    if (!$("feedback").hidden || !$("break").hidden) {
      if (event.key === "Enter" && event.target.tagName !== "A") { event.preventDefault(); continueAfterPanel(); }
      return;
    }
    if (event.key === "?") { toggleHelp(); event.preventDefault(); return; }
    if (event.key === "Escape" && !$("help").hidden) { toggleHelp(); return; }
    if (!current || $("stage").hidden) return;
    const label = [...document.querySelectorAll("#choices label")].find((l) => l.dataset.key === event.key.toLowerCase());
    if (label) {
      const input = label.querySelector("input");
      input.checked = input.type === "checkbox" ? !input.checked : true;
      input.dispatchEvent(new Event("change"));
      // The focus follows the answer, as it does with the arrow keys in a radio group: left on a button the
      // mouse pressed (a view mode, zoom), it would make Enter press that button again instead of submitting.
      input.focus({ preventScroll: true });
      event.preventDefault();
    } else if (event.key === "Enter" && (tag === "INPUT" || tag === "BODY" || tag === "DIV" || tag === "FORM")) {
      event.preventDefault();
      submit();
    } else if (event.key === "f") {
      setMode(mode === "flicker" ? "side" : "flicker");
    } else if (event.key === "+" || event.key === "=") {
      setZoom(zoom.s * 2);
    } else if (event.key === "-" || event.key === "_") {
      setZoom(zoom.s / 2);
    } else if (event.key === "0") {
      setZoom(1);
    } else if (event.key.startsWith("Arrow") && zoom.s > 1 && current.task.kind === "tile") {
      const step = 10;
      const moves = { ArrowLeft: [step, 0], ArrowRight: [-step, 0], ArrowUp: [0, step], ArrowDown: [0, -step] };
      pan(...moves[event.key]);
      event.preventDefault();
    }
  });

  function toggleHelp() {
    const help = $("help");
    help.hidden = !help.hidden;
    $("help-toggle").setAttribute("aria-expanded", String(!help.hidden));
  }

  $("answer-form").addEventListener("submit", submit);
  $("help-toggle").addEventListener("click", toggleHelp);
  $("skip").addEventListener("click", async () => {
    if (!current) return;
    root.dataset.ready = "0";
    await api("POST", `/api/v1/tasks/${current.task.id}/skip`);
    next();
  });
  $("feedback-next").addEventListener("click", continueAfterPanel);
  $("break-continue").addEventListener("click", continueAfterPanel);
  document.querySelectorAll("#tools [data-mode]").forEach((b) => b.addEventListener("click", () => setMode(b.dataset.mode)));
  $("zoom-in").addEventListener("click", () => setZoom(zoom.s * 2));
  $("zoom-out").addEventListener("click", () => setZoom(zoom.s / 2));
  $("zoom-reset").addEventListener("click", () => setZoom(1));
  $("swipe").addEventListener("input", (event) => swipeTo(event.target.value));
  $("marks-undo").addEventListener("click", () => { points.pop(); drawDots(); });
  $("graphic-show").addEventListener("click", () => {
    document.querySelectorAll("#media .blurred").forEach((n) => n.classList.remove("blurred"));
    $("graphic-show").hidden = true;
    $("graphic-text").textContent = T.graphic_notice;
  });
  next();
})();
