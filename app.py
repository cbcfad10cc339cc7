"""tldiag dashboard: `streamlit run app.py` (or `make run`). Pages live in pages/."""
import streamlit as st

from app_state import current_setup, gate, md_code, set_setup, sign_out_button, umap_warm_up

st.set_page_config(page_title="tldiag · transfer-learning diagnostics", page_icon="🧭", layout="wide")
# before anything of the app: the refusal of an open public address, or the sign-in page when [auth] is configured
mode = gate()

PAGES = [
    st.Page("pages/1_setup.py", title="Setup", icon="⚙️", default=True),
    st.Page("pages/2_shift.py", title="Shift", icon="📏"),
    st.Page("pages/3_explorer.py", title="Explorer", icon="🗺️"),
    st.Page("pages/4_probes.py", title="Probes", icon="🎯"),
    st.Page("pages/5_finetune.py", title="Fine-tune", icon="🔧"),
    st.Page("pages/6_efficiency.py", title="Data efficiency", icon="📈"),
    st.Page("pages/7_verdict.py", title="Verdict", icon="⚖️"),
]

page = st.navigation(PAGES)  # from here on every page runs through this router
umap_warm_up()  # once per server: compiles UMAP in the background, so the first map a user opens is fast
setup = current_setup()
set_setup(setup)  # keep the URL a complete permalink of the setup, on every page
if mode.banner:
    st.warning(mode.banner, icon="⚠️")
with st.sidebar:
    sign_out_button()
    st.markdown("### Current setup")
    st.markdown(f"**Model** {md_code(setup.model)}  \n**Source** {md_code(setup.source)}  \n"
                f"**Target** {md_code(setup.target)}")
    st.caption(f"{setup.resolution or 'native'} px · "
               f"{f'≤ {setup.limit} images/class' if setup.limit else 'all images'} · seed {setup.seed}. "
               "The page URL holds this setup: copy it to share the analysis.")

page.run()
